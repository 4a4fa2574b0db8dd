from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def write_case(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write YAML text to a case file under tmp_path/cases and return its path."""

    def write(text: str, name: str = "case.yaml") -> Path:
        path = tmp_path / "cases" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return write


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``gradcase ARGV...`` in this process: (exit status, stdout + stderr)."""
    from runner.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err
