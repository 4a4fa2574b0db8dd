"""The case file, as strict pydantic models: exactly what a YAML case may hold.

Every model forbids unknown keys and every default lives on its field. Semantic checks that need
the op registry (op names, arity, shapes) happen after this, in `runner.compile`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PlainValidator,
    Tag,
)
from pydantic.json_schema import SkipJsonSchema
from typing_extensions import TypeAliasType

from schemas.defaults import empty_dict, empty_list, empty_model

# float16 and bfloat16 are computed as torch's CPU kernels do (runner/dtypes.py).
FloatDType = Literal["float64", "float32", "float16", "bfloat16"]
OracleName = Literal["torch", "numeric"]
DType = Literal["float64", "float32", "float16", "bfloat16", "int64", "bool"]
Number = float | int | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# numpy's limit (NPY_MAXDIMS); also bounds the recursion below on hostile nesting.
MAX_LITERAL_DIMS = 64


def literal_shape(value: Any, depth: int = 0) -> tuple[int, ...]:
    """The shape of a nested-list literal of numbers; ValueError names the ragged row, or a
    nesting deeper than numpy's `MAX_LITERAL_DIMS`."""
    if isinstance(value, bool | int | float):
        return ()
    if depth >= MAX_LITERAL_DIMS:
        raise ValueError(
            f"a literal nested more than {MAX_LITERAL_DIMS} lists deep (numpy and torch take at "
            f"most {MAX_LITERAL_DIMS} dims)"
        )
    if isinstance(value, str) and value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
        spelled = (
            "-.inf"
            if value.strip().startswith("-")
            else ".nan"
            if "n" == value.strip().lower()[-1]
            else ".inf"
        )
        raise ValueError(
            f"expected a number, got the string {value!r}: YAML spells NaN and infinity "
            f".nan, .inf and -.inf (write {spelled})"
        )
    if not isinstance(value, list):
        raise ValueError(
            f"expected a number or a nested list of numbers, got {type(value).__name__}"
        )
    if not value:
        return (0,)
    shapes = [literal_shape(v, depth + 1) for v in value]
    for i, s in enumerate(shapes[1:], start=1):
        if s != shapes[0]:
            raise ValueError(
                f"ragged literal: element {i} has shape {s}, element 0 has shape {shapes[0]}"
            )
    return (len(value), *shapes[0])


def _check_literal(value: Any) -> Any:
    literal_shape(value)
    return value


# What a literal looks like in the JSON Schema (schemas/case.schema.json, for editors): a number, a
# boolean or a nested list of them; raggedness is left to validation, which takes any value and
# checks it with `literal_shape` (one message for a bad literal, not one per union branch).
_LiteralJson = TypeAliasType("TensorLiteral", "float | bool | list[_LiteralJson]")  # type: ignore[misc]
TensorLiteral = Annotated[Any, PlainValidator(_check_literal, json_schema_input_type=_LiteralJson)]


class RandomInput(_Strict):
    """``{random: normal|uniform|integers, shape, seed}`` drawn from ``numpy.random.default_rng``.

    ``normal``: standard normal; ``uniform``: in [low, high), default [0, 1); ``integers``: int64
    in [low, high), ``high`` required."""

    random: Literal["normal", "uniform", "integers"]
    shape: list[NonNegativeInt]
    seed: NonNegativeInt = 0
    low: float | None = None
    high: float | None = None
    dtype: DType | None = None
    requires_grad: bool | None = None


class FillInput(_Strict):
    """``{fill: value, shape}``: every element equal."""

    fill: Number
    shape: list[NonNegativeInt]
    dtype: DType | None = None
    requires_grad: bool | None = None


class ValuesInput(_Strict):
    """``{values: literal, dtype}``: a literal with an explicit dtype (integer indices, masks)."""

    values: TensorLiteral
    dtype: DType | None = None
    requires_grad: bool | None = None


def _input_kind(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("random", "fill", "values"):
            if key in value:
                return f"<{key}>"
        return "<mapping>"
    return "<literal>"


class _NoKind(_Strict):
    """A mapping that names none of random/fill/values (reported as such)."""

    random: Literal["normal", "uniform", "integers"]


InputSpec = Annotated[
    Annotated[TensorLiteral, Tag("<literal>")]
    | Annotated[RandomInput, Tag("<random>")]
    | Annotated[FillInput, Tag("<fill>")]
    | Annotated[ValuesInput, Tag("<values>")]
    # Never valid: kept out of the JSON Schema, where it would match a misspelt mapping.
    | Annotated[_NoKind, Tag("<mapping>"), SkipJsonSchema()],
    Discriminator(_input_kind),
]


class LongFormNode(_Strict):
    """``{op: matmul, args: [a, b], kwargs: {}}``: args are names or numbers; kwargs literals."""

    op: str
    args: list[Any] = empty_list()
    kwargs: dict[str, Any] = empty_dict()


class RandomUpstream(_Strict):
    random: Literal["normal", "uniform"]
    seed: NonNegativeInt = 0


def _upstream_kind(value: Any) -> str:
    return "<random>" if isinstance(value, dict) else "<literal>"


Upstream = Annotated[
    Annotated[TensorLiteral, Tag("<literal>")] | Annotated[RandomUpstream, Tag("<random>")],
    Discriminator(_upstream_kind),
]


class Tolerance(_Strict):
    """Applies to every comparison of the case when set: ``rtol`` relative to each reference
    element, ``atol`` absolute (torch.testing's meaning; no scale, no round-off floor). Unset,
    the scale-aware defaults of `runner.compare` apply."""

    rtol: NonNegativeFloat | None = None
    atol: NonNegativeFloat | None = None


class Expect(_Strict):
    value: dict[str, TensorLiteral] = empty_dict()
    grad: dict[str, TensorLiteral] = empty_dict()


# A rule: one numpy expression per differentiable argument (a list parameter takes one expression
# that returns a list, or a list of expressions, one per tensor). See runner/rules/lang.py.
RuleText = Annotated[str, Field(min_length=1)]
ArgumentRules = dict[str, RuleText | list[RuleText]]


class OpParam(_Strict):
    """``{kind: float, default: 1.0}``: a parameter of a case's own op with a default."""

    kind: str
    # Optional: without it the parameter is required (``model_fields_set`` tells them apart).
    default: Number | str | list[int] | None = None


class ComposedOp(_Strict):
    """An op defined in the case as a composition of catalogue ops (and earlier such ops):
    ``swish: {params: {x: tensor, beta: float}, forward: x * sigmoid(beta * x)}``.

    A parameter is a kind (``tensor``, ``int``, ``float``, ``bool``, ``str``, ``ints``,
    ``dims``, or those with ``?`` for None) or ``{kind, default}``. See runner/composed.py."""

    params: dict[str, str | OpParam] = Field(min_length=1)
    forward: str = Field(min_length=1)
    description: str = ""


class Case(_Strict):
    # Default: the file's path under the case root, without suffix.
    name: str | None = Field(default=None, min_length=1, pattern=r"^[^\x00-\x1f\x7f]+$")
    description: str = ""
    tags: list[str] = empty_list()
    dtype: FloatDType = "float64"
    # Ops of this case only, composed of catalogue ops: name -> params and forward.
    ops: dict[str, ComposedOp] = empty_dict()
    inputs: dict[str, InputSpec] = Field(min_length=1)
    graph: dict[str, str | LongFormNode] = Field(min_length=1)
    # Default: the last node.
    output: str | None = None
    # A number fills the output's shape (the notebook's ``(out.sum() * 3.3).backward()``).
    upstream: Upstream = 1.0
    # Default: every input that requires grad and every named node.
    check: list[str] | None = Field(default=None, min_length=1)
    tolerance: Tolerance = empty_model(Tolerance)
    expect: Expect = empty_model(Expect)
    # op name -> argument name -> rule: replaces the catalogue's VJP for every node of that op.
    rules: dict[str, ArgumentRules] = empty_dict()
    # A rule known to be wrong: failing is "xfailed" (the run passes), passing is "xpassed" (the
    # run fails: strict), both with this reason.
    xfail: str | None = Field(default=None, min_length=1)
    # Probe a passing case: under a random upstream when its own is constant, and each user
    # rule alone on random data. False turns both off (a rule right only on this data).
    probe: bool = True
    # NaN on both sides at the same element agrees (torch-exact); false makes it a mismatch.
    equal_nan: bool = True
    # The oracles to compare with, by name (runner/oracles.py's ORACLE_NAMES); default: the
    # run's (``gradcase run --oracle``, torch alone unless it says otherwise).
    oracles: list[OracleName] | None = Field(default=None, min_length=1)
