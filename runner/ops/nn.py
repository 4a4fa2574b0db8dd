"""Neural-network ops: activations over a dim, losses, linear, layer_norm, embedding; convolution
and pooling live in nn_conv.py."""

from __future__ import annotations

from runner.ops.nn_conv import OPS as CONV_OPS
from runner.ops.spec import Op

OPS: list[Op] = [*CONV_OPS]
