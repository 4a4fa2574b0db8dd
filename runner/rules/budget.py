"""How long the user's rules of one case may run in all, as a deadline that the rule language
checks after every step and that interrupts a RULES module's Python rule (SIGALRM, where the
platform has it and gradcase runs in the main thread).

`execute` opens a budget per case; outside one (a rule called directly) nothing is limited here.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

CASE_SECONDS = 20.0  # every user rule of one case, its probes included

_DEADLINE: ContextVar[float | None] = ContextVar("gradcase_rule_deadline", default=None)
# The whole case's deadline (``gradcase run --timeout``), and its length for the message.
_CASE_END: ContextVar[tuple[float, float] | None] = ContextVar("gradcase_case_end", default=None)


class CaseTimeout(BaseException):
    """The whole case ran past ``--timeout``. A BaseException: no ``except Exception`` around a
    rule or an oracle turns it into that rule's failure; `runner.execute` reports it."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the case ran for over {seconds:g} s (--timeout {seconds:g}) and was stopped; "
            "a case checks a rule on small tensors"
        )
        self.seconds = seconds


def _alarm_usable() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def case_timeout(seconds: float | None) -> Iterator[None]:
    """Raises `CaseTimeout` in the code inside once it has run ``seconds`` (SIGALRM, in the
    main thread; elsewhere, or with None or 0, nothing is limited). Python code is interrupted
    at once; a long numpy or torch call only when it returns to Python."""
    if not seconds or not _alarm_usable():
        yield
        return
    token = _CASE_END.set((time.monotonic() + seconds, seconds))

    def interrupt(signum: int, frame: object) -> None:
        raise CaseTimeout(seconds)

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _CASE_END.reset(token)


class OverBudget(Exception):
    """The case's rules ran past their budget."""

    def __init__(self) -> None:
        super().__init__(
            f"the case's rules have run for over {CASE_SECONDS:g} s in all; rules check small "
            "examples"
        )


@contextmanager
def case_budget(seconds: float | None = None) -> Iterator[None]:
    """A budget of ``seconds`` (default `CASE_SECONDS`) for the rules run inside."""
    token = _DEADLINE.set(time.monotonic() + (CASE_SECONDS if seconds is None else seconds))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def deadline() -> float | None:
    """The monotonic time by which the case's rules must be done, or None outside a budget."""
    return _DEADLINE.get()


@contextmanager
def time_limit() -> Iterator[None]:
    """Interrupts the Python code inside with `OverBudget` at the case's deadline (a rule of a
    RULES module that loops or sleeps). Raises `OverBudget` at once when it has passed."""
    end = deadline()
    if end is None:
        yield
        return
    left = end - time.monotonic()
    if left <= 0:
        raise OverBudget
    if not _alarm_usable():
        yield
        return
    case = _CASE_END.get()
    # One timer serves both deadlines: the earlier one fires, as its own exception, and the
    # case's is armed again on the way out.
    case_first = case is not None and case[0] - time.monotonic() < left

    def interrupt(signum: int, frame: object) -> None:
        if case_first and case is not None:
            raise CaseTimeout(case[1])
        raise OverBudget

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(
        signal.ITIMER_REAL,
        max(case[0] - time.monotonic(), 1e-3) if case_first and case is not None else left,
    )
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if case is not None:
            signal.setitimer(signal.ITIMER_REAL, max(case[0] - time.monotonic(), 1e-3))
