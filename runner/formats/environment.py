"""What a run ran on, for the report: Python's, numpy's and torch's versions, the torch oracle's
device, the time it started. Never imports torch: its version is read only when the run has
imported it already."""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from schemas.report import Environment


def environment(oracles: Sequence[Any]) -> Environment:
    """The environment now; ``oracles``: the run's `runner.oracles.Oracle`s, whose devices are
    listed (",".join; "cpu" when none has one)."""
    torch = sys.modules.get("torch")
    devices = [o.device for o in oracles if getattr(o, "device", None)]
    return Environment(
        python=platform.python_version(),
        numpy=np.__version__,
        torch=None if torch is None else str(getattr(torch, "__version__", "unknown")),
        device=",".join(dict.fromkeys(devices)) or "cpu",
        timestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
