"""gradcase: declarative tests of backward (VJP) rules against torch autograd.

``runner.check(paths, rules=RULES)`` is the Python API (`runner.api`); importing this package
never imports torch, and imports `runner.api` only when ``check`` or ``summary_text`` is first
used (the pytest plugin, `runner.pytest_plugin`, is loaded by every pytest run of a repository
that installs gradcase, and must stay cheap to import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.api import check, summary_text

__all__ = ["check", "summary_text"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from runner import api

        return getattr(api, name)
    raise AttributeError(f"module 'runner' has no attribute {name!r}")
