"""Reports beside the JSON one: JUnit XML (`junit`), a Markdown summary (`markdown`), GitHub
Actions annotations (`github`) and a self-contained HTML page (`html`). Each reads the report
model (`schemas.report`); the HTML page also the arrays `html.case_view` keeps of each case.
`failures` says where in the YAML each failure is."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

# Characters XML 1.0 cannot hold (a case name or message may carry them from YAML escapes).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot hold replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def write_text(path: Path, text: str) -> None:
    """Atomic, as the JSON report: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        # mkstemp makes the file private; a report is shared like any file the user writes.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
