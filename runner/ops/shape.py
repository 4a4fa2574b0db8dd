"""shape ops."""

from __future__ import annotations

from runner.ops.spec import Op

OPS: list[Op] = []
