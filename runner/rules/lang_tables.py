"""The whitelists: every numpy function, np.linalg function, array method, builtin, constant and
attribute a rule may use, one row each, and the names refused with a reason.

A row is a signature (`_sig`: the positional and keyword parameters a rule may pass, never
``out=``) and, for a call that can build an array bigger than its arguments, its estimator
(`runner.rules.lang_sizes`). A function with neither an estimate nor a result bounded by its
arguments has no row. Internal to the rule language: `runner.rules.lang` re-exports the public
lists (`NP_FUNCTIONS`, ..., `REFUSED_EXAMPLES`); the checker (`runner.rules.lang_check`) and the
interpreter (`runner.rules.lang_eval`) read the rows.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.rules.lang_limits import _Refused
from runner.rules.lang_python import Builtin, _b_convert, _b_minmax, _b_round, _b_sequence, _b_sum
from runner.rules.lang_sizes import (
    Bound,
    Estimator,
    _arange,
    _array,
    _creation,
    _diag,
    _diagflat,
    _dot,
    _einsum,
    _elementwise,
    _eye,
    _identity,
    _inner,
    _like,
    _linspace,
    _matmul,
    _nonzero,
    _pad,
    _product,
    _qr,
    _repeat,
    _solve,
    _split,
    _svd,
    _take,
    _take_along_axis,
    _tensordot,
    _tile,
    _tri,
    _where,
)

LITERAL_NAMES: dict[str, Any] = {"true": True, "false": False, "none": None, "null": None}
# ``x.astype(float)``: Python's type names as values mean numpy's types (calls are the builtins).
TYPE_NAMES: dict[str, type] = {"bool": np.bool_, "float": np.float64, "int": np.dtype(int).type}


# --- signatures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sig:
    pos: tuple[str, ...]  # positional parameters, in numpy's order, up to (never including) out
    required: int
    posonly: int  # the first `posonly` of `pos` cannot be passed by keyword
    var: str | None  # *args
    kw: tuple[str, ...]  # further keyword-only parameters

    def keywords(self) -> tuple[str, ...]:
        return self.pos[self.posonly :] + self.kw


def _sig(text: str) -> _Sig:
    """``"a axis? dtype? | keepdims?"``: ``?`` optional, ``/`` ends the positional-only ones,
    ``*name`` varargs, after ``|`` keyword-only."""
    head, _, tail = text.partition("|")
    pos: list[str] = []
    required, posonly, var, optional = 0, 0, None, False
    for token in head.split():
        if token == "/":
            posonly = len(pos)
        elif token.startswith("*"):
            var = token[1:]
        else:
            pos.append(token.rstrip("?"))
            optional = optional or token.endswith("?")
            if not optional:
                required += 1
    return _Sig(tuple(pos), required, posonly, var, tuple(t.rstrip("?") for t in tail.split()))


def _bind(sig: _Sig, args: list[Any], kwargs: Mapping[str, Any]) -> Bound:
    bound: Bound = dict(zip(sig.pos, args, strict=False))
    if len(args) > len(sig.pos):
        if sig.var is None:
            raise _Refused(f"takes at most {len(sig.pos)} positional arguments")
        bound[sig.var] = tuple(args[len(sig.pos) :])
    for key, value in kwargs.items():
        if key in bound or key not in sig.keywords():
            raise _Refused(f"got a second or unknown value for {key!r}")
        bound[key] = value
    missing = [p for p in sig.pos[: sig.required] if p not in bound]
    if missing:
        raise _Refused(f"missing the argument {missing[0]!r}")
    return bound


# --- numpy ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    sig: _Sig
    estimate: Estimator | None  # None: every result is no bigger than an argument
    forced: tuple[tuple[str, Any], ...] = ()


def _spec(text: str, estimate: Estimator | None = None, **forced: Any) -> _Spec:
    return _Spec(_sig(text), estimate, tuple(forced.items()))


_UFUNCS = """abs absolute add arccos arccosh arcsin arcsinh arctan arctan2 arctanh bitwise_and
bitwise_or bitwise_xor cbrt ceil copysign cos cosh deg2rad divide equal exp exp2 expm1 fabs
float_power floor floor_divide fmax fmin fmod greater greater_equal heaviside hypot invert
isfinite isinf isnan less less_equal log log10 log1p log2 logaddexp logaddexp2 logical_and
logical_not logical_or logical_xor maximum minimum mod multiply negative nextafter not_equal
positive power rad2deg reciprocal remainder rint sign signbit sin sinh spacing sqrt square
subtract tan tanh true_divide trunc""".split()


def _rows(names: str, spec: _Spec) -> dict[str, _Spec]:
    return dict.fromkeys(names.split(), spec)


_NP_SPECS: dict[str, _Spec] = {
    # --- elementwise ---
    **{
        name: _spec(
            "x1 x2 / | dtype?" if getattr(np, name).nin == 2 else "x / | dtype?", _elementwise
        )
        for name in _UFUNCS
        if isinstance(getattr(np, name, None), np.ufunc)
    },
    **_rows("sinc isneginf isposinf", _spec("x", _elementwise)),
    **_rows("isclose allclose", _spec("a b rtol? atol? equal_nan?", _elementwise)),
    "where": _spec("condition x? y? /", _where),
    "clip": _spec("a a_min? a_max? | min? max?", _elementwise),
    "nan_to_num": _spec("x | nan? posinf? neginf?", _elementwise),
    "round": _spec("a decimals?", _elementwise),
    # --- reductions and scans: no bigger than their argument ---
    **_rows("sum prod nansum nanprod", _spec("a axis? dtype? | keepdims? initial?")),
    **_rows("mean nanmean", _spec("a axis? dtype? | keepdims?")),
    **_rows("max min amax amin nanmax nanmin", _spec("a axis? | keepdims? initial?")),
    **_rows("any all argmax argmin count_nonzero median ptp", _spec("a axis? | keepdims?")),
    **_rows("var std nanvar nanstd", _spec("a axis? dtype? | ddof? keepdims? correction?")),
    **_rows("cumsum cumprod nancumsum nancumprod", _spec("a axis? dtype?")),
    "average": _spec("a axis? weights? returned? | keepdims?"),
    "trace": _spec("a offset? axis1? axis2? dtype?"),
    "array_equal": _spec("a1 a2 equal_nan?"),
    # --- the same elements in another shape or order ---
    **_rows("copy flatnonzero shape ndim", _spec("a")),
    **_rows("fliplr flipud", _spec("m")),
    **_rows("sort argsort", _spec("a axis? kind? | stable?")),
    **_rows("atleast_1d atleast_2d atleast_3d", _spec("*arys")),
    **_rows("split array_split", _spec("ary indices_or_sections axis?", _split)),
    **_rows("nonzero argwhere", _spec("a", _nonzero)),
    "reshape": _spec("a / shape order?"),
    "transpose": _spec("a axes?"),
    "swapaxes": _spec("a axis1 axis2"),
    "moveaxis": _spec("a source destination"),
    "squeeze": _spec("a axis?"),
    "expand_dims": _spec("a axis"),
    "ravel": _spec("a order?"),
    "flip": _spec("m axis?"),
    "rot90": _spec("m k? axes?"),
    "roll": _spec("a shift axis?"),
    "diagonal": _spec("a offset? axis1? axis2?"),
    # --- new arrays ---
    **_rows("ones zeros", _spec("shape dtype?", _creation)),
    **_rows("ones_like zeros_like", _spec("a dtype? | shape?", _like)),
    **_rows("tril triu", _spec("m k?", _tri)),
    "full": _spec("shape fill_value dtype?", _creation),
    "full_like": _spec("a fill_value dtype? | shape?", _like),
    "eye": _spec("N M? k? dtype?", _eye),
    "identity": _spec("n dtype?", _identity),
    "arange": _spec("start_or_stop / stop? step? | dtype?", _arange),
    "linspace": _spec("start stop num? endpoint? | dtype? axis?", _linspace),
    "array": _spec("object dtype? | ndmin?", _array),
    "asarray": _spec("a dtype?", _array),
    "broadcast_to": _spec("array shape", _creation),
    "diag": _spec("v k?", _diag),
    "diagflat": _spec("v k?", _diagflat),
    # --- joining (a list argument is bounded by its count) and repeating ---
    **_rows("hstack vstack", _spec("tup | dtype?")),
    **_rows("column_stack dstack", _spec("tup")),
    "stack": _spec("arrays axis? | dtype?"),
    "concatenate": _spec("arrays / axis? | dtype?"),
    "tile": _spec("A reps", _tile),
    "repeat": _spec("a repeats axis?", _repeat),
    "pad": _spec(
        "array pad_width mode? | constant_values? end_values? reflect_type? stat_length?", _pad
    ),
    "take": _spec("a indices axis? | mode?", _take),
    "take_along_axis": _spec("arr indices axis?", _take_along_axis),
    # --- products ---
    **_rows("outer kron", _spec("a b", _product)),
    "matmul": _spec("x1 x2 / | dtype?", _matmul),
    "dot": _spec("a b", _dot),
    "inner": _spec("a b /", _inner),
    "vdot": _spec("a b /"),
    "tensordot": _spec("a b axes?", _tensordot),
    "einsum": _spec("subscripts *operands | dtype?", _einsum, optimize=True),
    # --- about arrays and dtypes ---
    "size": _spec("a axis?"),
    "finfo": _spec("dtype"),
    "iinfo": _spec("int_type"),
    "result_type": _spec("*arrays_and_dtypes"),
}

_LINALG_SPECS: dict[str, _Spec] = {
    **_rows("inv det slogdet", _spec("a")),
    **_rows("eigh eigvalsh", _spec("a UPLO?")),
    "pinv": _spec("a rcond? hermitian? | rtol?"),
    "solve": _spec("a b", _solve),
    "norm": _spec("x ord? axis? keepdims?"),
    "svd": _spec("a full_matrices? compute_uv? hermitian?", _svd),
    "qr": _spec("a mode?", _qr),
    "cholesky": _spec("a / | upper?"),
}

# Methods bind their receiver as "a", so they share the functions' estimators.
_METHOD_SPECS: dict[str, _Spec] = {
    **_rows("sum prod", _spec("axis? dtype? | keepdims? initial?")),
    **_rows("max min", _spec("axis? | keepdims? initial?")),
    **_rows("any all argmax argmin", _spec("axis? | keepdims?")),
    **_rows("var std", _spec("axis? dtype? | ddof? keepdims?")),
    **_rows("cumsum cumprod", _spec("axis? dtype?")),
    **_rows("flatten ravel copy", _spec("")),
    "mean": _spec("axis? dtype? | keepdims?"),
    "reshape": _spec("*shape | order?"),
    "transpose": _spec("*axes"),
    "swapaxes": _spec("axis1 axis2 /"),
    "squeeze": _spec("axis?"),
    "astype": _spec("dtype"),
    "clip": _spec("min? max?", _elementwise),
    "round": _spec("decimals?"),
    "trace": _spec("offset? axis1? axis2? dtype?"),
    "diagonal": _spec("offset? axis1? axis2?"),
    "argsort": _spec("axis? kind? | stable?"),
    "nonzero": _spec("", _nonzero),
    "item": _spec("*args"),
    "dot": _spec("b /", _dot),
    "repeat": _spec("repeats / axis?", _repeat),
    "take": _spec("indices / axis? | mode?", _take),
}

_SCALAR_TYPES: dict[str, type] = {
    "bool": np.bool_,
    **{
        name: getattr(np, name)
        for name in "bool_ float16 float32 float64 int8 int16 int32 int64 intp uint8 uint16 "
        "uint32 uint64".split()
    },
}
_NP_VALUES: dict[str, Any] = {
    **_SCALAR_TYPES,
    **{name: getattr(np, name) for name in ("e", "euler_gamma", "inf", "nan", "pi")},
    "newaxis": None,
}
_CONVERT = _spec("value? /", _array)  # np.float32(x), np.bool_(mask)

_ARRAY_ATTRS = frozenset({"T", "mT", "dtype", "ndim", "shape", "size"})
_INFO_ATTRS = frozenset(
    {"bits", "eps", "epsneg", "max", "min", "precision", "resolution", "smallest_normal", "tiny"}
)
_RESULT_ATTRS = frozenset(  # fields of np.linalg's named results
    {"Q", "R", "S", "U", "Vh", "eigenvalues", "eigenvectors", "logabsdet", "sign"}
)

_IO = "does I/O or reaches the machine; rules may not"
_STATE = "changes numpy's global state; rules may not"
_CALLBACK = "calls back into Python; rules may not"
_REFUSED_NP: dict[str, str] = {
    **dict.fromkeys(
        """save savez savez_compressed load loadtxt savetxt genfromtxt fromfile fromregex
        frombuffer fromstring memmap ctypeslib lib DataSource testing f2py distutils
        show_config show_runtime get_include from_dlpack""".split(),
        _IO,
    ),
    **dict.fromkeys("seterr seterrcall setbufsize set_printoptions errstate".split(), _STATE),
    **dict.fromkeys(
        "vectorize frompyfunc apply_along_axis apply_over_axes piecewise".split(), _CALLBACK
    ),
    "random": "draws random numbers; a rule is a formula of its inputs",
}
_REFUSED_METHODS: dict[str, str] = {
    **dict.fromkeys("tofile dump dumps".split(), _IO),
    **dict.fromkeys(
        "fill put itemset resize setflags byteswap setfield partition".split(),
        "changes the array in place; rules may not",
    ),
    "sort": "sorts in place; use np.sort(x)",
    "view": "reinterprets memory; use .astype(dtype)",
    "tolist": "makes Python lists; keep the array",
    **dict.fromkeys(("conj", "conjugate"), "is for complex numbers, which rules do not use"),
}


# --- builtins (our own versions, in `runner.rules.lang_python`) ----------------------------------

_BUILTIN_SPECS: dict[str, tuple[_Sig, Builtin]] = {
    "abs": (_sig("x /"), lambda b, limit: builtins.abs(b["x"])),
    "bool": (_sig("x? /"), _b_convert(bool)),
    "float": (_sig("x? /"), _b_convert(float)),
    "int": (_sig("x? /"), _b_convert(int)),
    "len": (_sig("obj /"), lambda b, limit: builtins.len(b["obj"])),
    "list": (_sig("iterable? /"), _b_sequence(list)),
    "max": (_sig("*args"), _b_minmax(builtins.max)),
    "min": (_sig("*args"), _b_minmax(builtins.min)),
    "round": (_sig("number ndigits?"), _b_round),
    "sum": (_sig("iterable / start?"), _b_sum),
    "tuple": (_sig("iterable? /"), _b_sequence(tuple)),
}

# --- the public lists ----------------------------------------------------------------------------

NP_FUNCTIONS: tuple[str, ...] = tuple(sorted(n for n in _NP_SPECS if hasattr(np, n)))
NP_LINALG_FUNCTIONS: tuple[str, ...] = tuple(sorted(_LINALG_SPECS))
NP_CONSTANTS: tuple[str, ...] = tuple(sorted(_NP_VALUES))
ARRAY_METHODS: tuple[str, ...] = tuple(sorted(_METHOD_SPECS))
ARRAY_ATTRIBUTES: tuple[str, ...] = tuple(sorted(_ARRAY_ATTRS | _INFO_ATTRS | _RESULT_ATTRS))
BUILTINS: tuple[str, ...] = tuple(sorted(_BUILTIN_SPECS))
REFUSED_EXAMPLES: tuple[str, ...] = tuple(
    sorted(n for n, why in {**_REFUSED_NP, **_REFUSED_METHODS}.items() if why == _IO)
)
_NP: dict[str, Callable[..., Any]] = {n: getattr(np, n) for n in NP_FUNCTIONS}
_LINALG: dict[str, Callable[..., Any]] = {n: getattr(np.linalg, n) for n in NP_LINALG_FUNCTIONS}
