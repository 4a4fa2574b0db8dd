"""The JSON report, as a model: what `gradcase run --report FILE` writes.

Readers (CI dashboards, a later JUnit/HTML writer) depend on these field names: extend, don't
rename.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas.defaults import empty_list

# A source of values and gradients: "manual" (the rules under test), "expected" (the case's
# golden values), or an oracle's name ("torch"; later issues add more). A name, not a closed set.
Source = str
Status = Literal["passed", "failed", "error", "xfailed", "xpassed"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Comparison(_Model):
    """One pair of sources compared on one tensor."""

    left: Source
    right: Source
    ok: bool
    # Set when the pair could not be compared elementwise: a missing gradient, a shape mismatch,
    # NaN on one side only.
    problem: str | None = None
    worst_index: list[int] | None = None
    left_value: float | None = None
    right_value: float | None = None
    abs_err: float | None = None
    rel_err: float | None = None
    # Elements out of tolerance, of how many ("4 of 6 differ").
    mismatched: int | None = None
    total: int | None = None
    # Elements NaN on both sides (they agree unless the case sets equal_nan: false), and NaN or
    # an infinity on one side only, said with the side.
    nan_both: int | None = None
    one_sided: str | None = None
    # Elements left unchecked because torch itself is inconsistent there (runner.unchecked);
    # they neither pass nor fail. The reason is on the TensorCheck.
    unchecked: int | None = None
    rtol: float
    # The absolute allowance applied: atol_fraction * scale + floor (see runner.compare).
    atol: float
    # The reference's largest finite magnitude (None: the case set an absolute atol).
    scale: float | None = None
    # The round-off allowance of the computation, in the tensor's units (runner.roundoff).
    floor: float | None = None
    # Set when the pair was compared along one random direction u (a finite-difference oracle's
    # large tensors): left_value and right_value are then <u, gradient> of each side, and this
    # says how u was drawn and the bound used.
    projection: str | None = None
    # Set when an oracle declined this tensor (ok is then True): why, e.g. a node at a kink.
    skipped: str | None = None
    # Set on a failure in float16 or bfloat16 where torch's own result is further from float64
    # than any floor allows (runner.roundoff.HALF_FLOOR_CAP): why the failure may be the
    # dtype's, not the rule's.
    conditioning: str | None = None


class RuleUse(_Model):
    """Which rule gave (part of) a gradient: node ``node`` (op ``op``) gave it to its argument
    ``argument``; ``source`` is "catalogue", "case" or "module <name>"."""

    node: str
    op: str
    argument: str
    source: str
    expression: str = ""  # the node's expression text (names an anonymous node)


class TensorCheck(_Model):
    tensor: str
    kind: Literal["value", "grad"]
    ok: bool
    comparisons: list[Comparison]
    # For gradients: every rule that contributed to it.
    rules: list[RuleUse] = empty_list()
    # Why some elements were not checked (see Comparison.unchecked), when any were not.
    unchecked: str | None = None
    # file:line:col of the case's `expect` entry for this tensor, when it states one: where a
    # failed comparison against "expected" points.
    expect_where: str | None = None


class Fault(_Model):
    """Which rule is wrong, and how: the first node, walking back from the output, whose output
    gradient agrees with the oracle but whose gradient for ``argument`` does not."""

    node: str
    op: str
    argument: str
    source: str
    # file:line:col of the node's expression; its text for anonymous nodes.
    where: str
    expression: str = ""
    # Where the rule is written (a case rule's file:line:col and text, a module's file:line).
    rule: str = ""
    oracle: str = "torch"
    # What the node was judged under: "the case" (its data and upstream gradient, through the
    # graph), or a probe of a user's rule ("a random upstream gradient (seed 0)", "random inputs
    # and upstream gradient (seed 0)").
    under: str = "the case"
    comparison: Comparison | None = None
    # Set instead of a comparison when the rule failed outright (raised, wrong shape or dtype).
    problem: str | None = None
    # "looks like: ..." - a hint from testing the usual mistakes, never a verdict.
    diagnosis: str | None = None


class Diagnostic(_Model):
    """A problem found before running: file, 1-based line and column, and the message."""

    file: str
    line: int
    col: int
    message: str


class CaseResult(_Model):
    name: str
    file: str
    line: int
    status: Status
    duration: float
    tensors: list[TensorCheck] = empty_list()
    # Failure details as the CLI prints them (the fault first, then one entry per failed check,
    # or the error).
    messages: list[str] = empty_list()
    fault: Fault | None = None
    xfail: str | None = None
    # What the reader should know even when the case passed (a user's rule that gave nothing).
    notes: list[str] = empty_list()
    tags: list[str] = empty_list()
    # The case's floating dtype (float64, float32, float16, bfloat16); None for a case refused
    # before it ran.
    dtype: str | None = None
    # The case validated but its data was refused when it ran (an index or class target out of
    # range, an input numpy could not make): an error of the case file, so the run exits 2.
    invalid_input: bool = False


class Summary(_Model):
    passed: int
    failed: int
    # Cases that could not run (torch refused an op, a forward raised); invalid files are
    # counted apart, in invalid_files.
    errors: int
    xfailed: int = 0
    xpassed: int = 0
    # Elements of gradients left unchecked (torch inconsistent there), over all cases.
    unchecked: int = 0
    # Cases run (the sum of the statuses above), and files that did not validate.
    cases: int = 0
    invalid_files: int = 0


class Environment(_Model):
    """What the run ran on."""

    python: str
    numpy: str
    # None when the run did not import torch (no case computed a torch gradient).
    torch: str | None = None
    # Where the torch oracle ran ("cpu", "cuda:0"); numpy (the manual side) is always the CPU.
    device: str = "cpu"
    # When the run started, ISO 8601 in UTC ("2025-01-31T12:00:00Z").
    timestamp: str


class Report(_Model):
    summary: Summary
    cases: list[CaseResult]
    # Invalid files: every problem found while loading and validating, with its location.
    diagnostics: list[Diagnostic] = empty_list()
    # The user's rule sources in force for the run ("module rules.py", ...).
    rule_sources: list[str] = empty_list()
    environment: Environment | None = None
    # The run was stopped (Ctrl-C) before every case ran: the report holds the cases finished.
    interrupted: bool = False

    @property
    def passed(self) -> bool:
        """True when the run passes: nothing failed, errored or xpassed, and no file is invalid
        (xfailed cases do not fail a run)."""
        s = self.summary
        return not (
            s.failed
            or s.errors
            or s.xpassed
            or s.invalid_files
            or self.diagnostics
            or self.interrupted
        )
