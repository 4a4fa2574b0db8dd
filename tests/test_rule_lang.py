"""The rule language: real values, every escape refused with its column, every big array refused
before it exists."""

from __future__ import annotations

import ast
import inspect
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runner.rules import lang_tables
from runner.rules.lang import (
    ARRAY_ATTRIBUTES,
    ARRAY_METHODS,
    BUILTINS,
    NP_CONSTANTS,
    NP_FUNCTIONS,
    NP_LINALG_FUNCTIONS,
    REFUSED_EXAMPLES,
    RuleEvalError,
    RuleExpr,
    RuleLangError,
    evaluate,
    parse_rule,
)

RNG = np.random.default_rng(0)
A = RNG.normal(size=(3, 4))
B = RNG.normal(size=(5, 4))
G = RNG.normal(size=(3, 5))
LIMIT = 10**7


def run(text: str, limit: int = LIMIT, **env: Any) -> Any:
    return evaluate(parse_rule(text), env, max_elements=limit)


# --- values ----------------------------------------------------------------------------------


def test_matmul_rules() -> None:
    np.testing.assert_array_equal(run("grad @ other.T", grad=G, other=B.T), G @ B)
    np.testing.assert_array_equal(run("input.T @ grad", grad=G, input=A), A.T @ G)


def test_relu_and_max_masks() -> None:
    x = np.array([-1.0, 0.0, 2.0])
    g = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(run("np.where(input > 0, grad, 0.0)", input=x, grad=g), [0, 0, 3])
    mask = run("input == out", input=x, out=np.float64(2.0))
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, [False, False, True])
    np.testing.assert_array_equal(run("(input == out) * grad", input=x, out=2.0, grad=g), [0, 0, 3])


def test_softmax_rule_matches_its_jacobian() -> None:
    x = RNG.normal(size=(2, 3))
    s = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    g = RNG.normal(size=(2, 3))
    rule = parse_rule("grad * s - s * (grad * s).sum(axis=dim, keepdims=True)")
    assert rule.names == (("grad", 0), ("s", 7), ("dim", 35))
    got = evaluate(rule, {"grad": g, "s": s, "dim": 1}, max_elements=LIMIT)
    for row in range(2):
        jacobian = np.diag(s[row]) - np.outer(s[row], s[row])
        np.testing.assert_allclose(got[row], jacobian.T @ g[row])


def test_list_result() -> None:
    got = run("[grad[:2], grad[2:]]", grad=np.arange(5.0))
    assert isinstance(got, list)
    np.testing.assert_array_equal(got[0], [0, 1])
    np.testing.assert_array_equal(got[1], [2, 3, 4])


def test_einsum_tensordot_and_keepdims() -> None:
    np.testing.assert_allclose(run("np.einsum('ij,kj->ik', grad, b)", grad=A, b=B), A @ B.T)
    batched = RNG.normal(size=(2, 3, 4))
    np.testing.assert_allclose(
        run("np.einsum('...ij,kj->...ik', x, b)", x=batched, b=B), batched @ B.T
    )
    np.testing.assert_allclose(run("np.tensordot(a, b, axes=([1], [1]))", a=A, b=B), A @ B.T)
    kept = run("np.sum(grad, axis=1, keepdims=True)", grad=A)
    assert kept.shape == (3, 1)
    np.testing.assert_allclose(kept[:, 0], A.sum(axis=1))


def test_zero_d_and_dtype_preserved() -> None:
    got = run("grad * 2.0 + 1", grad=np.array(1.5))
    assert got.shape == () and got == 4.0
    g32 = np.ones((2, 3), dtype=np.float32)
    for text in (
        "grad * 2.0 - np.exp(x) / 3",
        "np.where(x > 0, grad, 0.0)",
        "grad.sum(axis=0, keepdims=True)",
        "np.einsum('ij->j', grad)",
        "grad * np.finfo(grad.dtype).eps",
    ):
        assert run(text, grad=g32, x=g32).dtype == np.float32, text


def test_names_literals_and_type_names() -> None:
    rule = parse_rule("np.clip(grad, min, max) if keepdim is none else true")
    assert rule.names == (("grad", 8), ("min", 14), ("max", 19), ("keepdim", 27))
    assert run("true and not false") is True
    assert run("true + 1", true=np.float64(41.0)) == 42.0  # a bound name wins over the literal
    assert run("x.astype(float).dtype == np.float64", x=np.arange(3)) is True
    assert run("np.zeros(2, dtype=bool).dtype", x=1) == np.bool_


def test_builtins_and_python_values() -> None:
    parts = [np.ones(2), np.full(2, 2.0)]
    np.testing.assert_array_equal(run("sum(tensors)", tensors=parts), [3.0, 3.0])
    assert run("max(x.shape) + len(x) + abs(-2)", x=A) == 9
    assert run("x.shape + (1,) * 2", x=A) == (3, 4, 1, 1)
    assert run("x.reshape(x.shape[0], -1).sum(-1).shape", x=A) == (3,)
    assert run("np.linalg.svd(x, full_matrices=False).S.shape", x=A) == (3,)
    assert run("int(x.sum() > 0) + round(2.5) + float('1.5')", x=A) in (3.5, 4.5)


def test_read_only_inputs_are_never_written() -> None:
    g = np.arange(6.0).reshape(2, 3)
    g.flags.writeable = False
    for text in ("np.clip(grad, 1, 4)", "np.sort(-grad)", "grad.T.copy()", "grad[grad > 2] * 2"):
        run(text, grad=g)
    np.testing.assert_array_equal(g, np.arange(6.0).reshape(2, 3))


def test_calling_a_parenthesised_function_is_the_same_call() -> None:
    np.testing.assert_array_equal(run("(np.exp)(x)", x=A), np.exp(A))


# --- static refusals: message and column -------------------------------------------------------

REFUSED = [
    ("grad.__class__", "attributes starting with _", 5),
    ("grad.x.__dict__", "attributes starting with _", 7),
    ("np.sum.__call__", "attributes starting with _", 7),
    ("np.__dict__", "attributes starting with _", 3),
    ("é + grad.__class__", "attributes starting with _", 9),
    ("np.save(grad, 'x')", "np.save does I/O", 3),
    ("np.lib", "np.lib does I/O", 3),
    ("np.ctypeslib", "np.ctypeslib does I/O", 3),
    ("np.memmap('x')", "np.memmap does I/O", 3),
    ("np.random.normal()", "np.random draws random numbers", 3),
    ("np.seterr(all='raise')", "global state", 3),
    ("[x for x in grad]", "comprehensions", 0),
    ("sum(x for x in grad)", "generator expressions", 3),
    ("lambda: 0", "lambda", 0),
    ("(y := grad)", "assignment (:=)", 1),
    ("f'{grad}'", "f-strings", 0),
    ("{1: grad}", "dict literals", 0),
    ("{grad}", "set literals", 0),
    ("grad * 1j", "complex numbers", 7),
    ("b'x'", "bytes literals", 0),
    ("open('x')", "open() is not allowed", 0),
    ("getattr(np, 'save')", "getattr() is not allowed", 0),
    ("type(grad)", "type() is not allowed", 0),
    ("__import__('os')", "__import__() is not allowed", 0),
    ("grad.sort()", "sorts in place; use np.sort", 5),
    ("grad.fill(0)", "changes the array in place", 5),
    ("grad.tofile('x')", ".tofile() does I/O", 5),
    ("grad.foo", ".foo is not allowed (attributes: T, dtype", 5),
    ("grad.summ()", "did you mean .sum?", 5),
    ("grad.real", ".real is not allowed", 5),
    ("grad.sum", ".sum is a method; call it", 5),
    ("grad.T()", ".T is an attribute, not a method", 5),
    ("np.exp", "np.exp is a function; call it", 3),
    ("np.pi()", "np.pi is a constant", 3),
    ("np.expp(grad)", "did you mean np.exp?", 3),
    ("np.linalg", "np.linalg can only be used as np.linalg.<function>", 3),
    ("np.linalg.eig(grad)", "np.linalg.eig is not allowed", 10),
    ("np", "np can only be used as np.<name>", 0),
    ("np.add(grad, 1, out=grad)", "out= writes into an existing array", 16),
    ("grad.sum(0, None, grad)", ".sum() takes at most 2 positional arguments", 18),
    ("np.add(grad, 1, grad)", "np.add() takes at most 2 positional arguments", 16),
    ("np.nan_to_num(grad, copy=False)", "takes no keyword 'copy'", 20),
    ("np.sum(grad, where=grad > 0)", "takes no keyword 'where'", 13),
    ("np.sum(*grad)", "*args is not allowed", 7),
    ("np.sum(**grad)", "**kwargs is not allowed", 7),
    ("grad[*grad]", "* unpacking is not allowed", 5),
    ("np.exp(grad)(1)", "only names can be called", 0),
    ("grad[0](1)", "only names can be called", 0),
    ("grad in tensors", "'in' and 'not in' are not allowed", 0),
    ("grad is other", "'is' and 'is not' only compare with None", 0),
    ("...", "... is only allowed inside [ ]", 0),
    ("__builtins__", "names with __ are not allowed", 0),
    ("2 ** " + "9" * 4000, "bits (at most 10000)", 5),
    ("  grad + )", "invalid rule: unmatched ')'", 9),
    ("grad\x00", "invalid rule", 0),
    ("", "empty rule", 0),
    ("x" * 10_001, "at most 10000", 0),
    ("-" * 200 + "grad", "nests more than 100 levels", 101),
    ("+".join(["grad"] * 2000), "nests more than 100 levels", 0),
    ("-" * 5000 + "grad", "nests more than 100 levels deep; split it into simpler steps", 0),
]


@pytest.mark.parametrize(("text", "message", "col"), REFUSED, ids=[r[0][:30] for r in REFUSED])
def test_refused_statically(text: str, message: str, col: int) -> None:
    with pytest.raises(RuleLangError) as caught:
        parse_rule(text)
    assert message in str(caught.value)
    assert caught.value.col == col


def test_columns_count_characters_across_lines() -> None:
    with pytest.raises(RuleLangError) as caught:
        parse_rule(" (grad\r\n + é.x)")
    assert caught.value.col == 13
    with pytest.raises(RuleEvalError) as failed:
        evaluate(parse_rule("(grad\n + nope)"), {"grad": A}, max_elements=LIMIT)
    assert failed.value.col == 9
    assert "'nope' is not bound" in str(failed.value)


# --- evaluation errors -------------------------------------------------------------------------

FAILING = [
    ("grad.T @ b", "ValueError: matmul", 0),
    ("grad + np.ones(7)", "objects cannot be broadcast to a single shape", 0),
    ("grad + np.log(np.ones(10**12))", "1000000000000 elements", 14),
    ("1 + (grad if grad else 0)", "truth value of an array", 13),
    ("0 < grad < 1", "truth value of an array", 0),
    ("grad and 1", "truth value of an array", 0),
    ("grad.item()", "can only convert an array of size 1", 0),
    ("grad.astype('O')", "dtype object is not allowed", 0),
    ("np.zeros(3, dtype='U3')", "is not allowed", 0),
    ("np.array('abc')", "object= must be numbers or arrays, not str", 0),
    ("np.full(3, ['a' * 9999] * 9999)", "fill_value= must be numbers or arrays", 0),
    ("grad == ['a' * 9999] * 9999", "must hold numbers or arrays", 0),
    ("np.where(grad > 0, grad, None)", "made a value of dtype object", 0),
    ("(-8) ** 0.5", "made a value of type complex", 0),
    ("'%s' % grad", "strings only support +", 0),
    ("float(10 ** 3000)", "OverflowError", 0),
    ("nope", "name 'nope' is not bound", 0),
    ("x.sum()", "list has no method .sum()", 0),
    ("x.T", "list has no attribute .T", 2),
    ("np.einsum(1, grad)", "subscripts", 0),
]


@pytest.mark.parametrize(("text", "message", "col"), FAILING, ids=[f[0] for f in FAILING])
def test_evaluation_errors(text: str, message: str, col: int) -> None:
    with pytest.raises(RuleEvalError) as caught:
        run(text, grad=A, b=B, x=[A])
    assert message in str(caught.value)
    assert caught.value.col == col


def test_only_rule_eval_error_leaves_evaluate() -> None:
    # A tree that never went through parse_rule: the evaluator only knows its tables.
    for text in ("open('x')", "grad.__class__", "np.save('x', grad)", "[x for x in grad]"):
        rule = RuleExpr(text, ast.parse(text, mode="eval"), ())
        with pytest.raises(RuleEvalError):
            evaluate(rule, {"grad": A}, max_elements=LIMIT)
    with pytest.raises(RuleEvalError):
        evaluate(parse_rule("grad"), {"grad": A}, max_elements=-1)


# --- resources ---------------------------------------------------------------------------------

TOO_BIG = [
    ("np.ones(10**12)", {}, 10**6, "1000000000000 elements"),
    ("np.outer(a, a)", {"a": np.ones(10**4)}, 10**6, "100000000 elements"),
    ("grad[:, None] * grad[None, :]", {"grad": np.ones(10**4)}, 10**6, "100000000 elements"),
    ("np.broadcast_to(grad, (10**6, 10**6))", {"grad": A}, 10**6, "1000000000000 elements"),
    ("np.eye(10**7)", {}, 10**6, "100000000000000 elements"),
    ("2 ** 10**9", {}, 10**6, "1000000000 bits"),
    ("1 << 10**9", {}, 10**6, "1000000001 bits"),
    ("[0] * 10**9", {}, 10**6, "1000000000 items"),
    ("'a' * 10**9", {}, 10**6, "1000000000 items"),
    ("round(5, -10**9)", {}, 10**6, "too big int"),
    ("np.linalg.svd(t)", {"t": np.ones((10**4, 2))}, 10**6, "100000006 elements"),
    ("np.linalg.qr(t, mode='complete')", {"t": np.ones((10**4, 2))}, 10**6, "100020000"),
    ("np.kron(a, a)", {"a": np.ones(10**4)}, 10**6, "100000000 elements"),
    ("np.tile(a, (100, 100))", {"a": np.ones(10**3)}, 10**6, "10000000 elements"),
    ("np.repeat(a, 10**9)", {"a": np.ones(3)}, 10**6, "3000000000 elements"),
    ("np.pad(a, 10**6)", {"a": np.ones((2, 2))}, 10**6, "4000008000004 elements"),
    ("np.diag(a, k=10**6)", {"a": np.ones(3)}, 10**6, "1000006000009 elements"),
    ("np.arange(10**9)", {}, 10**6, "1000000000 elements"),
    ("np.linspace(0, 1, 10**9)", {}, 10**6, "1000000000 elements"),
    ("np.full_like(a, 0, shape=(10**6, 10**6))", {"a": A}, 10**6, "1000000000000 elements"),
    ("np.einsum('i,j->ij', a, a)", {"a": np.ones(10**4)}, 10**6, "100000000 elements"),
    ("np.einsum('i,j,k->', a, a, a)", {"a": np.ones(10**4)}, 10**6, "multiply-adds"),
    ("np.tensordot(a, a, axes=0)", {"a": np.ones(10**4)}, 10**6, "100000000 elements"),
    ("a[:, None] @ a[None, :]", {"a": np.ones(10**4)}, 10**6, "100000000 elements"),
    ("a[i]", {"a": np.ones((10, 10)), "i": np.zeros((10**3, 10**3), int)}, 10**6, "10000000 "),
    ("np.stack([a, a, a])", {"a": np.ones(10**6)}, 10**6, "3000000 elements"),
    ("np.split(a, 10**6)", {"a": np.ones(10**6)}, 10**6, "1000000 pieces"),
    (
        "np.take(a, i, axis=1)",
        {"a": np.ones((10**3, 10)), "i": np.zeros(10**4, int)},
        10**6,
        "10000000 ",
    ),
]


@pytest.mark.parametrize(("text", "env", "limit", "message"), TOO_BIG, ids=[t[0] for t in TOO_BIG])
def test_big_results_refused_before_they_exist(
    text: str, env: dict[str, Any], limit: int, message: str
) -> None:
    start = time.perf_counter()
    with pytest.raises(RuleEvalError) as caught:
        evaluate(parse_rule(text), env, max_elements=limit)
    assert time.perf_counter() - start < 0.5
    assert message in str(caught.value)


def test_sizes_up_to_the_limit_run() -> None:
    a = np.ones(10**3)
    assert run("np.outer(a, a)", 10**6, a=a).shape == (10**3, 10**3)
    assert run("a[:, None] * a[None, :]", 10**6, a=a).sum() == 10**6
    assert run("np.linalg.svd(t, full_matrices=False)[0].shape", 10**6, t=np.ones((10**4, 2))) == (
        10**4,
        2,
    )


def test_all_the_arrays_of_one_rule_are_bounded_together() -> None:
    many = "[" + ", ".join(["np.ones(1000)"] * 40) + "]"
    with pytest.raises(RuleEvalError) as caught:
        run(many, 1000)
    assert "made 33000 elements in all (at most 32 x 1000)" in str(caught.value)
    # Views and the caller's arrays hold no new memory: they are not counted.
    g = np.ones(1000)
    assert len(run("[" + ", ".join(["g.T", "g[::-1]", "g"] * 40) + "]", 1000, g=g)) == 120


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("np.array([[0] * 10000] * 10000)", "100000000 elements"),
        ("sum([a] * 5000)", "50000000 elements"),
        ("max(c, r)", "compares scalars only"),
        ("max([c, r])", "compares scalars only"),
        ("[c] == [r]", "compare only when they hold numbers"),
        ("np.tensordot(a, a, axes=10**18)", "does not fit"),
    ],
)
def test_python_level_loops_and_hidden_broadcasts_refused(text: str, message: str) -> None:
    env = {"a": np.ones(10**4), "c": np.ones((10**4, 1)), "r": np.ones((1, 10**4))}
    start = time.perf_counter()
    with pytest.raises(RuleEvalError) as caught:
        run(text, 10**7, **env)
    assert time.perf_counter() - start < 0.5
    assert message in str(caught.value)


def test_nested_lists_are_walked_once() -> None:
    start = time.perf_counter()
    assert run("[[0] * 10000] * 10000 == [[0] * 10000] * 10000") is True
    assert time.perf_counter() - start < 0.5


# --- the canary ------------------------------------------------------------------------------


def test_hostile_rules_are_refused_and_touch_nothing(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    p = repr(str(canary))
    hostile = [
        f"open({p}, 'w')",
        f"open({p}, 'w').write('x')",
        f"np.save({p}, grad)",
        f"np.savetxt({p}, grad)",
        f"np.savez({p}, grad)",
        f"grad.tofile({p})",
        f"grad.dump({p})",
        f"np.memmap({p}, mode='w+', shape=(1,))",
        f"np.lib.format.open_memmap({p}, mode='w+', shape=(1,))",
        f"__import__('os').system('touch ' + {p})",
        f"__import__('pathlib').Path({p}).touch()",
        f"getattr(np, 'save')({p}, grad)",
        f"np.sum.__globals__['__builtins__']['open']({p}, 'w')",
        "grad.__class__.__base__.__subclasses__()",
        f"(lambda: open({p}, 'w'))()",
        f"[open(q, 'w') for q in [{p}]]",
        f"eval(\"open({p}, 'w')\")",
        f"exec(\"open({p}, 'w')\")",
        f"compile('1', {p}, 'eval')",
        f"f'{{open({p}, \"w\")}}'",
        "np.ctypeslib.as_array(grad)",
        f"np.fromfile({p})",
        "np.testing.assert_equal(1, 1)",
        "np.add.at(grad, 0, 1)",
        "np.copyto(grad, 0)",
        "np.put(grad, 0, 1)",
        "np.fill_diagonal(grad, 0)",
        "np.nan_to_num(grad, copy=False)",
        "grad.setflags(write=True)",
        "np.einsum('i->i', grad, out=grad)",
        f"np.vectorize(open)({p})",
        "breakpoint()",
    ]
    grad = np.ones(3)
    for text in hostile:
        with pytest.raises(RuleLangError):
            parse_rule(text)
    assert not canary.exists()
    np.testing.assert_array_equal(grad, np.ones(3))


# --- the tables ---------------------------------------------------------------------------------


def test_lists_are_sorted_and_cover_the_brief() -> None:
    for names in (
        NP_FUNCTIONS,
        NP_LINALG_FUNCTIONS,
        NP_CONSTANTS,
        ARRAY_METHODS,
        ARRAY_ATTRIBUTES,
        BUILTINS,
        REFUSED_EXAMPLES,
    ):
        assert list(names) == sorted(set(names))
    brief = """where exp log sqrt abs absolute sign maximum minimum fmax fmin sum mean prod max min
    amax amin nansum nanmean broadcast_to expand_dims squeeze reshape transpose swapaxes moveaxis
    ones_like zeros_like full_like ones zeros full eye identity diag diagonal outer einsum
    tensordot matmul dot vdot inner kron trace tril triu stack concatenate hstack vstack tile
    repeat flip roll pad cumsum cumprod sort argsort argmax argmin take take_along_axis clip
    isclose isnan isinf isfinite nan_to_num logical_and logical_or logical_not logical_xor equal
    not_equal greater greater_equal less less_equal log1p expm1 log2 log10 exp2 sin cos tan
    arcsin arccos arctan arctan2 sinh cosh tanh arcsinh arccosh arctanh square reciprocal power
    floor ceil round rint trunc heaviside count_nonzero any all var std allclose array asarray
    arange linspace shape ndim size result_type finfo sinc hypot cbrt copysign""".split()
    assert set(brief) <= set(NP_FUNCTIONS)
    assert {
        "inv",
        "pinv",
        "det",
        "slogdet",
        "solve",
        "norm",
        "svd",
        "eigh",
        "qr",
        "cholesky",
    } <= set(NP_LINALG_FUNCTIONS)
    assert {"float32", "float64", "bool_", "pi", "newaxis", "inf", "nan"} <= set(NP_CONSTANTS)
    assert {"save", "load", "memmap", "tofile", "ctypeslib", "lib"} <= set(REFUSED_EXAMPLES)
    assert not {"sort", "fill", "put", "resize", "tolist"} & set(ARRAY_METHODS)
    assert not {"copyto", "put", "place", "put_along_axis", "fill_diagonal"} & set(NP_FUNCTIONS)


def _signature(fn: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def test_table_rows_match_numpy_signatures() -> None:
    """A row's positional parameters are numpy's first ones, in order, so a positional argument
    can never land in out=; its keywords are numpy's parameters."""
    tables = [
        (lang_tables._NP_SPECS, lambda name: getattr(np, name), False),
        (lang_tables._LINALG_SPECS, lambda name: getattr(np.linalg, name), False),
        (lang_tables._METHOD_SPECS, lambda name: getattr(np.ndarray, name), True),
    ]
    for specs, lookup, method in tables:
        for name, spec in specs.items():
            fn = lookup(name)
            sig = spec.sig
            assert "out" not in sig.pos + sig.kw, name
            if isinstance(fn, np.ufunc):
                assert len(sig.pos) == fn.nin, name
                continue
            found = _signature(fn)
            assert found is not None, name
            params = list(found.parameters.values())[1 if method else 0 :]
            names = [p.name for p in params]
            positional = [
                p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            if positional or sig.var is None:  # einsum's subscripts come out of its *operands
                assert len(sig.pos) <= len(positional), name
                named = zip(sig.pos[sig.posonly :], positional[sig.posonly :], strict=False)
                assert all(mine == theirs for mine, theirs in named), name
            if sig.var is not None:
                assert any(p.kind is p.VAR_POSITIONAL for p in params), name
            takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
            assert takes_any or set(sig.kw) <= set(names), name


@pytest.mark.parametrize(
    "text",
    [
        "np.linalg.norm(np.ones((3100, 3100)), 2)",
        "np.ones((3000, 3000)) @ np.ones((3000, 3000))",
        "np.linalg.inv(np.eye(3000))",
        "np.dot(np.ones((3000, 3000)), np.ones((3000, 3000)))",
        "np.tensordot(np.ones((3000, 3000)), np.ones((3000, 3000)), 1)",
    ],
)
def test_cubic_work_is_bounded_before_it_runs(text: str) -> None:
    import time

    start = time.perf_counter()
    with pytest.raises(RuleEvalError, match=r"multiply-adds \(at most 10000000000\)"):
        evaluate(parse_rule(text), {}, max_elements=10**7)
    assert time.perf_counter() - start < 1.0


def test_a_rule_has_a_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.rules import lang_eval

    monkeypatch.setattr(lang_eval, "MAX_SECONDS", 0.0)
    with pytest.raises(RuleEvalError, match=r"the rule has run for over 0 s"):
        evaluate(parse_rule("grad + 1"), {"grad": np.ones(2)}, max_elements=10)


def test_a_case_budget_stops_a_rule_at_its_next_step() -> None:
    from runner.rules.budget import case_budget

    with case_budget(0.0), pytest.raises(RuleEvalError, match=r"have run for over .* s in all"):
        evaluate(parse_rule("grad + 1"), {"grad": np.ones(2)}, max_elements=10)
