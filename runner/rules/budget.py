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
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise OverBudget

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, left)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
