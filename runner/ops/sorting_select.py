"""Which element torch's CPU selection kernels pick among ties, by running the same algorithms.

torch's topk, kthvalue and median-with-dim return one index per selected value, and their
backward sends the values' gradient to that index, so at tied values the gradient lands where the
kernel's partitioning happened to leave each element. That choice is no documented rule but a
consequence of the algorithm, so here the algorithms themselves are run, step for step, on the
positions of one slice:

- topk (aten's ``topk_impl_loop``): libstdc++'s ``std::partial_sort`` when ``k * 64 <= n``,
  else ``std::nth_element`` at ``k - 1`` followed by ``std::sort`` of the first ``k - 1``;
  the comparator orders by value only (NaN the largest), so ties fall where the introselect,
  introsort and heap steps leave them.
- kthvalue (aten's ``quick_select_template``, TH's Sedgewick quickselect): median of three,
  Hoare partition, comparator "greater or NaN".
- median / nanmedian with a dim: ``std::nth_element`` with a strict total order (value, then
  position), so the result is simply the element of that rank: no emulation is needed there.

Every function takes a 1-d array of values (numpy, any float dtype) and returns positions into
it; they are pure Python loops over small slices (the sweep's and cases' sizes), never vectorised.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from runner.ops.spec import Array

Less = Callable[[int, int], bool]  # comp(a, b) on positions into the values


def _comparator(values: Array, largest: bool) -> Less:
    """topk's comparator on positions: "before" means larger (smaller), NaN counting as the
    largest value in both directions (aten's ``_isnan(x) && !_isnan(y) || x > y``)."""
    v = [float(e) for e in values]
    nan = [e != e for e in v]
    if largest:
        return lambda a, b: (nan[a] and not nan[b]) or v[a] > v[b]
    return lambda a, b: (not nan[a] and nan[b]) or v[a] < v[b]


# --- libstdc++'s algorithms on a list of positions, [first, last) ---


def _lg(n: int) -> int:
    return n.bit_length() - 1


def _move_median_to_first(s: list[int], result: int, a: int, b: int, c: int, comp: Less) -> None:
    if comp(s[a], s[b]):
        pick = b if comp(s[b], s[c]) else (c if comp(s[a], s[c]) else a)
    else:
        pick = a if comp(s[a], s[c]) else (c if comp(s[b], s[c]) else b)
    s[result], s[pick] = s[pick], s[result]


def _unguarded_partition(s: list[int], first: int, last: int, pivot: int, comp: Less) -> int:
    while True:
        while comp(s[first], s[pivot]):
            first += 1
        last -= 1
        while comp(s[pivot], s[last]):
            last -= 1
        if not first < last:
            return first
        s[first], s[last] = s[last], s[first]
        first += 1


def _partition_pivot(s: list[int], first: int, last: int, comp: Less) -> int:
    mid = first + (last - first) // 2
    _move_median_to_first(s, first, first + 1, mid, last - 1, comp)
    return _unguarded_partition(s, first + 1, last, first, comp)


def _linear_insert(s: list[int], last: int, comp: Less) -> None:
    val = s[last]
    nxt = last - 1
    while comp(val, s[nxt]):
        s[last] = s[nxt]
        last, nxt = nxt, nxt - 1
    s[last] = val


def _insertion_sort(s: list[int], first: int, last: int, comp: Less) -> None:
    for i in range(first + 1, last):
        if comp(s[i], s[first]):
            s[first : i + 1] = [s[i], *s[first:i]]
        else:
            _linear_insert(s, i, comp)


def _adjust_heap(s: list[int], first: int, hole: int, n: int, value: int, comp: Less) -> None:
    top, child = hole, hole
    while child < (n - 1) // 2:
        child = 2 * (child + 1)
        if comp(s[first + child], s[first + child - 1]):
            child -= 1
        s[first + hole] = s[first + child]
        hole = child
    if n % 2 == 0 and child == (n - 2) // 2:
        child = 2 * (child + 1)
        s[first + hole] = s[first + child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and comp(s[first + parent], value):
        s[first + hole] = s[first + parent]
        hole, parent = parent, (parent - 1) // 2
    s[first + hole] = value


def _make_heap(s: list[int], first: int, last: int, comp: Less) -> None:
    n = last - first
    for parent in range((n - 2) // 2, -1, -1) if n >= 2 else ():
        _adjust_heap(s, first, parent, n, s[first + parent], comp)


def _pop_heap(s: list[int], first: int, last: int, result: int, comp: Less) -> None:
    value = s[result]
    s[result] = s[first]
    _adjust_heap(s, first, 0, last - first, value, comp)


def _heap_select(s: list[int], first: int, middle: int, last: int, comp: Less) -> None:
    _make_heap(s, first, middle, comp)
    for i in range(middle, last):
        if comp(s[i], s[first]):
            _pop_heap(s, first, middle, i, comp)


def _partial_sort(s: list[int], first: int, middle: int, last: int, comp: Less) -> None:
    _heap_select(s, first, middle, last, comp)
    while middle - first > 1:
        middle -= 1
        _pop_heap(s, first, middle, middle, comp)


def _nth_element(s: list[int], nth: int, comp: Less) -> None:
    first, last = 0, len(s)
    if first == last or nth == last:
        return
    depth = _lg(last - first) * 2
    while last - first > 3:
        if depth == 0:
            _heap_select(s, first, nth + 1, last, comp)
            s[first], s[nth] = s[nth], s[first]
            return
        depth -= 1
        cut = _partition_pivot(s, first, last, comp)
        if cut <= nth:
            first = cut
        else:
            last = cut
    _insertion_sort(s, first, last, comp)


def _introsort(s: list[int], first: int, last: int, depth: int, comp: Less) -> None:
    while last - first > 16:
        if depth == 0:
            _partial_sort(s, first, last, last, comp)
            return
        depth -= 1
        cut = _partition_pivot(s, first, last, comp)
        _introsort(s, cut, last, depth, comp)
        last = cut


def _sort(s: list[int], first: int, last: int, comp: Less) -> None:
    if first == last:
        return
    _introsort(s, first, last, _lg(last - first) * 2, comp)
    if last - first > 16:
        _insertion_sort(s, first, first + 16, comp)
        for i in range(first + 16, last):
            _linear_insert(s, i, comp)
    else:
        _insertion_sort(s, first, last, comp)


# Below this many elements libstdc++'s std::sort is an insertion sort, so stable.
_INSERTION = 16


def sort_order(x: Array, d: int, descending: bool, stable: bool = False) -> Array:
    """torch's CPU sort order along axis ``d`` (int64 positions), NaN the largest: with
    ``stable``, ties in their input order (numpy's stable sort); without, the order of
    libstdc++'s std::sort (introsort, median-of-three pivot, insertion sort below 17 elements)
    on (value) comparisons, which torch 2.13's CPU kernel uses: ties in slices of more than 16
    elements come out in that algorithm's order, not the input's (checked against torch on 400
    random rows with ties and NaNs). Slices without ties take numpy's path either way."""
    moved = np.moveaxis(np.asarray(x), d, -1)
    order = _stable_order(moved, descending)
    n = moved.shape[-1]
    if stable or n <= _INSERTION:
        return np.moveaxis(order, -1, d)
    rows, flat = order.reshape(-1, n), moved.reshape(-1, n)
    for i, row in enumerate(flat):
        ranked = row[rows[i]]
        same = (ranked[1:] == ranked[:-1]) | (np.isnan(ranked[1:]) & np.isnan(ranked[:-1]))
        if np.any(same):  # ties: the algorithm decides their order
            s = list(range(n))
            _sort(s, 0, n, _comparator(row, descending))
            rows[i] = s
    return np.moveaxis(rows.reshape(order.shape), -1, d)


def _stable_order(moved: Array, descending: bool) -> Array:
    """Stable order along the last axis, NaN the largest: ascending puts NaNs last, descending
    first, ties in their input order both ways."""
    if not descending:
        return np.argsort(moved, axis=-1, kind="stable").astype(np.int64)
    # lexsort's last key is the primary one: NaNs (False) first, then descending values.
    keys = (-np.nan_to_num(moved, nan=0.0), ~np.isnan(moved))
    return np.lexsort(keys, axis=-1).astype(np.int64)


def topk_positions(values: Array, k: int, largest: bool, sorted: bool) -> list[int]:
    """The ``k`` positions torch's CPU topk returns for one slice, in its order."""
    n = len(values)
    s = list(range(n))
    if k == 0:
        return []
    comp = _comparator(values, largest)
    if k * 64 <= n:
        _partial_sort(s, 0, k, n, comp)
    else:
        _nth_element(s, k - 1, comp)
        if sorted:
            _sort(s, 0, k - 1, comp)
    return s[:k]


def kthvalue_position(values: Array, k: int) -> int:
    """The position torch's CPU kthvalue returns for one slice (``k`` counted from 1): TH's
    quickselect, comparator "greater, or NaN and the other not"."""
    v = [float(e) for e in values]
    pos = list(range(len(v)))

    def gt(x: float, y: float) -> bool:
        return (x != x and y == y) or x > y

    def swap(i: int, j: int) -> None:
        v[i], v[j] = v[j], v[i]
        pos[i], pos[j] = pos[j], pos[i]

    target, lo, hi = k - 1, 0, len(v) - 1
    while True:
        if hi <= lo:
            break
        if hi == lo + 1:
            if gt(v[lo], v[hi]):
                swap(lo, hi)
            break
        swap((lo + hi) >> 1, lo + 1)
        if gt(v[lo + 1], v[hi]):
            swap(lo + 1, hi)
        if gt(v[lo], v[hi]):
            swap(lo, hi)
        if gt(v[lo + 1], v[lo]):
            swap(lo + 1, lo)
        i, j, piv = lo + 1, hi, v[lo]
        while True:
            i += 1
            while gt(piv, v[i]):
                i += 1
            j -= 1
            while gt(v[j], piv):
                j -= 1
            if j < i:
                break
            swap(i, j)
        swap(lo, j)
        if j <= target:
            lo = i
        if j >= target:
            hi = j - 1
    return pos[target]


def median_position(values: Array, ignore_nan: bool) -> int:
    """The position torch's CPU median (nanmedian) with a dim returns for one slice: the first
    NaN for median; else the element of rank ``(m - 1) // 2`` in the order (value, position),
    over the m non-NaN elements for nanmedian (rank 0 of all of them when every one is NaN)."""
    x = np.asarray(values)
    nan = np.isnan(x)
    if not ignore_nan and nan.any():
        return int(np.argmax(nan))
    if nan.all():
        return _all_nan_position(len(x))
    order = np.lexsort((np.arange(len(x)), np.where(nan, np.inf, x), nan))
    return int(order[(int((~nan).sum()) - 1) // 2])


def _all_nan_position(n: int) -> int:
    """nanmedian of an all-NaN slice: nth_element at 0 over elements all equivalent (NaN vs
    NaN compares false both ways), so libstdc++'s partitioning decides; run it."""
    s = list(range(n))
    _nth_element(s, 0, lambda a, b: False)
    return s[0]
