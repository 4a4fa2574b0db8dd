"""The JSON report, as a model: what `gradcase run --report FILE` writes.

Readers (CI dashboards, a later JUnit/HTML writer) depend on these field names: extend, don't
rename.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Source = Literal["manual", "torch", "expected"]


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
    rtol: float
    atol: float


class TensorCheck(_Model):
    tensor: str
    kind: Literal["value", "grad"]
    ok: bool
    comparisons: list[Comparison]


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
    status: Literal["passed", "failed", "error"]
    duration: float
    tensors: list[TensorCheck] = []
    # Failure details as the CLI prints them (one entry per failed check, or the error).
    messages: list[str] = []


class Summary(_Model):
    passed: int
    failed: int
    errors: int


class Report(_Model):
    summary: Summary
    cases: list[CaseResult]
    # Invalid files: every problem found while loading and validating, with its location.
    diagnostics: list[Diagnostic] = []
