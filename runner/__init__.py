"""gradcase: declarative tests of backward (VJP) rules against torch autograd.

``runner.check(paths, rules=RULES)`` is the Python API (`runner.api`); importing this package
never imports torch.
"""

from __future__ import annotations

from runner.api import check, summary_text

__all__ = ["check", "summary_text"]
