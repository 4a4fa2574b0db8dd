"""The reports beside the JSON one (`runner.formats`): JUnit XML parsed back with the right
counts, the Markdown summary (and $GITHUB_STEP_SUMMARY), GitHub annotations on the YAML line, the
JSON report's additions, and the HTML page rendered in a real headless chromium, whose
screenshot must show the heatmap's colours for a failing case and not for a passing one."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from runner.cli import main
from runner.formats.html import NEGATIVE, POSITIVE, colour, pooled
from schemas.report import Report
from tests.conftest import ROOT

WriteCase = Callable[..., Path]

# Five cases, one per status, and an invalid file beside them.
CASES = """\
name: t/pass
tags: [demo, mul]
inputs:
  a: [[4.0, 5.0], [1.0, 3.0]]
  b: [[2.0, 2.0], [2.0, 2.0]]
graph:
  c: a * b
---
name: t/golden
inputs:
  a: [[4.0, 5.0], [1.0, 3.0]]
  b: [[2.0, 2.0], [2.0, 2.0]]
graph:
  c: a * b
upstream: 3
expect:
  grad:
    b: [[12.0, 15.0], [3.0, 9.5]]
---
name: t/wrong-rule
inputs:
  x: {random: normal, shape: [6, 5], seed: 1}
graph:
  p: softmax(x, dim=1)
upstream: {random: normal, seed: 3}
rules:
  softmax:
    input: grad * out * (1 - out)
---
name: t/xfail
xfail: exp's rule written with its input
inputs:
  x: [1.0, 2.0]
graph:
  y: exp(x)
rules:
  exp:
    input: grad * input
---
name: t/xpass
xfail: fixed since
inputs:
  x: [1.0, 2.0]
graph:
  y: exp(x)
---
name: t/error
inputs:
  x: {random: normal, shape: [2, 3], seed: 0}
  t: {values: [3, 0], dtype: int64}
graph:
  y: cross_entropy(x, t)
"""
# Lines in CASES: the golden value of t/golden's 'b', t/wrong-rule's rule, t/error's node.
EXPECT_LINE, RULE_LINE, ERROR_LINE = 18, 28, 52
INVALID = "inputs:\n  a: [1.0]\ngraph:\n  c: matmull(a, a)\n"


@pytest.fixture
def ran(
    write_case: WriteCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, str, Path]:
    """Run CASES and INVALID with every report asked for, as GitHub Actions would."""
    write_case(CASES)
    write_case(INVALID, "invalid.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    (tmp_path / "summary.md").write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "cases",
            "--report",
            str(out / "r.json"),
            "--junit",
            str(out / "junit.xml"),
            "--markdown",
            str(out / "summary.md"),
            "--html",
            str(out / "page.html"),
        ]
    )
    text, err = capsys.readouterr()
    return code, text + err, out


def test_junit_parses_with_one_testcase_per_case_and_the_right_counts(
    ran: tuple[int, str, Path], tmp_path: Path
) -> None:
    code, out, folder = ran
    assert code == 2, out  # an invalid file
    suite = ET.parse(folder / "junit.xml").getroot()
    assert suite.tag == "testsuite"
    # 6 cases + 1 invalid file; failed: golden, wrong-rule, xpass; errors: error, the file.
    assert {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "7",
        "failures": "3",
        "errors": "2",
        "skipped": "1",
    }
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    case_file = "cases/case.yaml"
    assert cases["t/pass"].get("file") == case_file and cases["t/pass"].get("line") == "1"
    assert list(cases["t/pass"]) == []
    golden = cases["t/golden"].find("failure")
    assert golden is not None and golden.get("type") == "mismatch"
    assert golden.text is not None
    assert (
        f"{case_file}:{EXPECT_LINE}:8: t/golden: grad of 'b': manual vs expected differ at "
        "index [1, 1]: manual 9, expected 9.5; 1 of 4 differ"
    ) in golden.text
    wrong = cases["t/wrong-rule"].find("failure")
    assert wrong is not None and wrong.text is not None
    assert wrong.text.startswith(f"{case_file}:{RULE_LINE}:12: the rule of node 'p' (softmax)")
    skipped = cases["t/xfail"].find("skipped")
    assert (
        skipped is not None and skipped.get("message") == "xfail: exp's rule written with its input"
    )
    xpass = cases["t/xpass"].find("failure")
    assert xpass is not None and xpass.get("type") == "xpass"
    error = cases["t/error"].find("error")
    assert error is not None and error.text is not None
    assert f"{case_file}:{ERROR_LINE}:6: node 'y': forward of cross_entropy raised" in error.text
    invalid = cases["cases/invalid.yaml"].find("error")
    assert invalid is not None and invalid.get("type") == "invalid"
    assert invalid.text is not None and ":4:6: unknown op 'matmull'" in invalid.text
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["device"] == "cpu" and props["numpy"] == np.__version__


def test_github_annotations_point_at_the_yaml_line_of_each_failure(
    ran: tuple[int, str, Path], tmp_path: Path
) -> None:
    _, out, _ = ran
    lines = [line for line in out.splitlines() if line.startswith("::error ")]
    file = "cases/case.yaml"
    places = {re.sub(r",title=.*", "", line) for line in lines}
    assert {
        f"::error file={file},line={EXPECT_LINE},col=8",
        f"::error file={file},line={RULE_LINE},col=12",
        f"::error file={file},line={ERROR_LINE},col=6",
        f"::error file={file},line=40,col=1",  # t/xpass: its first line
    } <= places
    assert any(",line=4,col=6,title=gradcase%3A invalid case file::unknown op" in x for x in lines)
    # Neither passing nor expected failures are annotated.
    assert not any("t/pass" in x or "t/xfail" in x for x in lines)
    # The count line stays last.
    assert out.strip().splitlines()[-1] == (
        "6 cases: 1 passed, 2 failed, 1 error, 1 xfailed, 1 xpassed; 1 invalid file"
    )


def test_no_annotations_outside_github_actions(
    write_case: WriteCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    path = write_case(CASES)
    main(["run", str(path), "-k", "golden", "--report", str(tmp_path / "r.json")])
    assert "::error" not in capsys.readouterr().out


def test_quiet_keeps_the_annotations(
    write_case: WriteCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """-q quiets the terminal, not the machine: GitHub's annotations stay (a tester found
    none printed under -q), the report paths go."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    path = write_case(CASES)
    main(["run", str(path), "-q", "--report", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert sum(line.startswith("::error ") for line in out.splitlines()) >= 3
    assert "report: " not in out


def test_annotation_text_is_escaped() -> None:
    from runner.formats.github import _error

    assert _error("a,b:c.yaml", 3, 1, "T: x", "50%\nnext") == (
        "::error file=a%2Cb%3Ac.yaml,line=3,col=1,title=T%3A x::50%25%0Anext"
    )


def test_markdown_summary_table_and_github_step_summary(
    ran: tuple[int, str, Path], tmp_path: Path
) -> None:
    _, _, folder = ran
    text = (folder / "summary.md").read_text()
    # cases passed failed errors xfailed xpassed invalid-files
    assert "| 6 | 1 | 2 | 1 | 1 | 1 | 1 |" in text
    rows = [line for line in text.splitlines() if re.match(r"\| [A-Z]+ \| ", line)]
    assert [r.split(" | ")[0] for r in rows] == [
        "| INVALID",
        "| FAILED",
        "| FAILED",
        "| ERROR",
        "| XPASSED",
        "| XFAILED",
    ]
    golden = next(r for r in rows if "`t/golden`" in r)
    assert f"case.yaml:{EXPECT_LINE}:8`" in golden and "max\\|expected\\|" in golden
    assert "t/pass" not in text
    assert (tmp_path / "summary.md").read_text() == "earlier step\n" + text


def test_json_report_gains_tags_expect_location_and_environment(
    ran: tuple[int, str, Path], tmp_path: Path
) -> None:
    _, _, folder = ran
    report = Report.model_validate_json((folder / "r.json").read_text())
    by_name = {c.name: c for c in report.cases}
    assert by_name["t/pass"].tags == ["demo", "mul"]
    grad_b = next(t for t in by_name["t/golden"].tensors if (t.kind, t.tensor) == ("grad", "b"))
    assert grad_b.expect_where == f"cases/case.yaml:{EXPECT_LINE}:8"
    failed = [c for c in grad_b.comparisons if not c.ok]
    assert [(c.right, c.mismatched, c.total) for c in failed] == [
        ("expected", 1, 4),
        ("expected", 1, 4),
    ]
    env = report.environment
    assert env is not None
    import torch

    assert (env.torch, env.numpy, env.device) == (torch.__version__, np.__version__, "cpu")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", env.timestamp)


def test_the_environment_leaves_torch_out_when_the_run_did_not_import_it() -> None:
    script = (
        "import sys; from runner.formats.environment import environment\n"
        "env = environment([])\n"
        "assert env.torch is None and 'torch' not in sys.modules, env\n"
        "from runner.cli import main\n"
        "main(['schema', '--report'])\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["title"] == "Report"


def test_report_schema_json_is_generated_from_the_model() -> None:
    committed = json.loads((ROOT / "schemas" / "report.schema.json").read_text())
    assert committed == Report.model_json_schema(), "run `make docs`"


def test_pooled_heatmap_keeps_the_largest_element_of_each_block_with_its_sign() -> None:
    diff = np.zeros((130, 70))
    diff[0, 1] = -5.0
    diff[129, 69] = 3.0
    diff[64, 2] = np.nan
    cells, block = pooled(diff)
    assert block == (3, 2) and cells.shape == (44, 35)
    assert cells[0, 0] == -5.0 and cells[43, 34] == 3.0 and np.isnan(cells[21, 1])
    assert np.count_nonzero(np.nan_to_num(cells, nan=1.0)) == 3
    small, one = pooled(np.arange(6.0).reshape(2, 3))
    assert one == (1, 1) and small.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert pooled(np.float64(2.0))[0].shape == (1, 1)
    assert colour(-2.0, 2.0) == NEGATIVE and colour(2.0, 2.0) == POSITIVE
    assert colour(0.0, 2.0) == (255, 255, 255)


def test_html_page_has_every_case_and_a_heatmap_only_for_failing_tensors(
    ran: tuple[int, str, Path],
) -> None:
    _, _, folder = ran
    page = (folder / "page.html").read_text()
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script src" not in page and "<link" not in page
    names = re.findall(r'<section class="case" data-status="(\w+)" data-name="([^"]+)"', page)
    assert names == [
        ("failed", "t/golden"),
        ("failed", "t/wrong-rule"),
        ("error", "t/error"),
        ("xpassed", "t/xpass"),
        ("xfailed", "t/xfail"),
        ("passed", "t/pass"),
    ]
    sections = dict(
        zip([n for _, n in names], page.split('<section class="case"')[1:], strict=True)
    )
    assert sections["t/wrong-rule"].count('<svg class="heatmap"') == 1
    assert sections["t/wrong-rule"].count("<rect ") == 30  # (6, 5): one cell per element
    assert "manual - torch, shape [6, 5]" in sections["t/wrong-rule"]
    assert sections["t/golden"].count('<svg class="heatmap"') == 1
    assert "manual - expected, shape [2, 2]" in sections["t/golden"]
    assert '<svg class="heatmap"' not in sections["t/pass"]
    assert "unknown op &#x27;matmull&#x27;" in page


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "NOT TESTED: the HTML report was not rendered in a browser: chromium is not installed "
        "and `make test` could not install it (it runs apt-get install chromium as root or "
        "with sudo -n)"
    )


def _chromium(browser: str, *args: str) -> str:
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _pixels(png: bytes) -> dict[tuple[int, int, int], int]:
    """How many pixels of each colour an 8-bit RGB(A) PNG holds (zlib and the PNG filters, by
    hand: no imaging library)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data, header = 8, b"", (0, 0, 0, 0, 0, 0, 0)
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            data += body
    width, height, depth, kind_, _, _, interlace = header
    assert depth == 8 and interlace == 0 and kind_ in (2, 6), header
    bpp = 3 if kind_ == 2 else 4
    raw, stride = zlib.decompress(data), width * bpp
    prev, counts = bytearray(stride), np.zeros(0, np.int64)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        f, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if f == 2:
            line = bytearray(np.frombuffer(line, np.uint8) + np.frombuffer(prev, np.uint8))
        elif f in (1, 3, 4):
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
                if f == 1:
                    line[x] = (line[x] + a) & 255
                elif f == 3:
                    line[x] = (line[x] + (a + b) // 2) & 255
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                    line[x] = (line[x] + pred) & 255
        rows.append(bytes(line))
        prev = line
    pixels = np.frombuffer(b"".join(rows), np.uint8).reshape(-1, bpp)[:, :3].astype(np.int64)
    keys, counts = np.unique(
        pixels[:, 0] << 16 | pixels[:, 1] << 8 | pixels[:, 2], return_counts=True
    )
    return {
        (int(k) >> 16, int(k) >> 8 & 255, int(k) & 255): int(n)
        for k, n in zip(keys, counts, strict=True)
    }


def _heatmap_pixels(png: bytes) -> int:
    counts = _pixels(png)
    return counts.get(POSITIVE, 0) + counts.get(NEGATIVE, 0)


def test_html_page_renders_in_headless_chromium_with_a_heatmap_for_a_failing_case(
    write_case: WriteCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    browser = _browser()
    cases = CASES.split("---\n")
    write_case(cases[2], "wrong.yaml")  # t/wrong-rule
    write_case(cases[0], "pass.yaml")  # t/pass
    page = tmp_path / "page.html"
    main(
        ["run", str(tmp_path / "cases"), "--report", str(tmp_path / "r.json"), "--html", str(page)]
    )
    capsys.readouterr()
    # The DOM after the page's script ran: the filter given in the link hid the case it does
    # not match, and counted.
    dom = _chromium(browser, "--dump-dom", page.as_uri() + "#q=wrong")
    assert '<span id="shown">showing 1 of 2 cases</span>' in dom
    assert re.search(r'<section class="case" data-status="passed"[^>]* hidden=""', dom)
    assert not re.search(r'<section class="case" data-status="failed"[^>]* hidden=""', dom)
    # The screenshot: the heatmap's end colours are painted for the failing case (its largest
    # difference fills at least one whole cell); with only the passing case shown, nowhere.
    shots = {}
    for name, link in (("all", ""), ("passed only", "#status=passed")):
        png = tmp_path / "shot.png"
        _chromium(browser, f"--screenshot={png}", "--window-size=900,1000", page.as_uri() + link)
        shots[name] = _heatmap_pixels(png.read_bytes())
    assert shots["all"] >= 200, shots
    assert shots["passed only"] == 0, shots


def test_the_html_page_of_a_parallel_run_has_the_heatmaps_of_a_serial_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under -j the arrays live in the workers: they build each case's view and send it back."""
    pages = []
    for jobs in ("1", "2"):
        page = tmp_path / f"page{jobs}.html"
        main(
            [
                "run",
                str(ROOT / "cases" / "hypotheses"),
                "-j",
                jobs,
                "--html",
                str(page),
                "--report",
                str(tmp_path / f"r{jobs}.json"),
            ]
        )
        capsys.readouterr()
        pages.append(page.read_text())
    assert pages[0].count("<svg") == pages[1].count("<svg") > 0


def test_a_fault_message_says_its_hint_once_and_no_empty_argument() -> None:
    """JUnit, Markdown and the annotations print `fault_message`: a shape problem that carries
    its hint already printed it twice, and a rule that raised (no one argument) said "wrong
    for ''" (found by a black-box tester)."""
    from runner.report import fault_message
    from schemas.report import Fault

    hint = "not summed over the broadcast dimensions"
    shape = Fault(
        node="c", op="mul", argument="other", source="case", where="c.yaml:6:6",
        problem=f"returned shape (2, 3), the operand's is (3,); looks like: {hint}",
        diagnosis=hint,
    )  # fmt: skip
    assert fault_message(shape).count(hint) == 1
    raised = Fault(
        node="y", op="kron", argument="", source="module m.py", where="c.yaml:6:6",
        problem="m.py:4: raised ValueError: cannot reshape",
    )  # fmt: skip
    text = fault_message(raised)
    assert "wrong for ''" not in text
    assert text.startswith("the rule of node 'y' (kron) is wrong (module m.py rule)")
