"""Convolution and pooling ops (part of the nn family)."""

from __future__ import annotations

from runner.ops.spec import Op

OPS: list[Op] = []
