"""The report as one self-contained HTML page (`gradcase run --html FILE`): the summary, a filter
(by name or tag, and by status), and per case its messages and every checked tensor from each
source side by side (the text of `gradcase show`); a failing tensor also shows a heatmap of the
difference between the two sources of its first failed comparison, with the diagnosis.

The JSON report holds only summaries, so the page needs arrays the run keeps: `case_view` takes
them from the case's `runner.execute.Sources` as each case finishes and keeps only what the page
shows (the side-by-side text and at most HEATMAP_CELLS differences per failing tensor), so a long
run does not hold every case's arrays. Inline CSS and JavaScript, no network: the page opens
from a CI artifact as it is.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runner.formats import write_text
from runner.report import count_line
from runner.show import tensor_lines
from schemas.report import CaseResult, Report, TensorCheck

# The heatmap shows at most HEATMAP_SIDE x HEATMAP_SIDE cells; a larger difference is pooled in
# blocks, each cell the block's element of largest magnitude (sign kept).
HEATMAP_SIDE = 64
# The colours of +max and -max (ColorBrewer RdBu ends); zero is white, NaN grey. The page uses
# them nowhere else, so a screenshot's pixels of these colours are the heatmap's.
POSITIVE = (202, 0, 32)
NEGATIVE = (5, 113, 176)
NAN = (128, 128, 128)
_ORDER = {"failed": 0, "error": 1, "xpassed": 2, "xfailed": 3, "passed": 4}


@dataclass(frozen=True)
class Heatmap:
    """``left - right`` of one comparison, as a (rows, cols) float64 grid: the tensor's last axis
    across, the others flattened down (a 0-d tensor is 1 x 1); ``block`` the (rows, cols) of
    elements each cell pools (1, 1 when not pooled)."""

    left: str
    right: str
    shape: tuple[int, ...]
    cells: np.ndarray[Any, np.dtype[np.float64]]
    block: tuple[int, int] = (1, 1)


@dataclass(frozen=True)
class TensorView:
    check: TensorCheck
    lines: list[str]
    heatmap: Heatmap | None = None


@dataclass(frozen=True)
class CaseView:
    """What the page shows of one case beyond its `CaseResult`."""

    name: str
    tensors: list[TensorView] = field(default_factory=list)
    # Why the view could not be made (the page then shows the case's messages only).
    problem: str | None = None


def case_view(result: CaseResult, sources: Any) -> CaseView:
    """The side-by-side text of every checked tensor of ``result`` and, for each failing one,
    its heatmap; ``sources``: the case's `runner.execute.Sources` (None when it computed none)."""
    if sources is None:
        return CaseView(result.name)
    views = []
    try:
        # inf - inf is NaN on purpose here (grey in the heatmap); numpy need not warn.
        with np.errstate(invalid="ignore", over="ignore"):
            for check in result.tensors:
                lines = [line for line in tensor_lines(check, sources) if line]
                heatmap = None if check.ok else _heatmap(check, sources)
                views.append(TensorView(check, lines, heatmap))
    except Exception as exc:  # the page must never lose the run
        return CaseView(result.name, problem=f"{type(exc).__name__}: {exc}")
    return CaseView(result.name, views)


def _heatmap(check: TensorCheck, sources: Any) -> Heatmap | None:
    table = sources.values if check.kind == "value" else sources.grads
    for c in check.comparisons:
        if c.ok or c.projection:
            continue
        left, right = (
            table.get(c.left, {}).get(check.tensor),
            table.get(c.right, {}).get(check.tensor),
        )
        if left is None or right is None or np.shape(left) != np.shape(right):
            continue
        diff = np.asarray(left, np.float64) - np.asarray(right, np.float64)
        if diff.size == 0:
            continue
        cells, block = pooled(diff)
        return Heatmap(c.left, c.right, tuple(diff.shape), cells, block)
    return None


def pooled(diff: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], tuple[int, int]]:
    """``diff`` as a grid of at most HEATMAP_SIDE x HEATMAP_SIDE cells: (rows, cols) = (the
    product of all axes but the last, the last); over the limit, blocks of elements pooled to the
    one of largest magnitude (NaN first: it must not hide)."""
    cols = diff.shape[-1] if diff.ndim else 1
    grid = diff.reshape(-1, cols)
    rows = grid.shape[0]
    fr, fc = -(-rows // HEATMAP_SIDE), -(-cols // HEATMAP_SIDE)
    if fr == 1 and fc == 1:
        return grid, (1, 1)
    padded = np.zeros((-(-rows // fr) * fr, -(-cols // fc) * fc))
    padded[:rows, :cols] = grid
    tiles = padded.reshape(padded.shape[0] // fr, fr, padded.shape[1] // fc, fc)
    blocks = tiles.transpose(0, 2, 1, 3).reshape(tiles.shape[0], tiles.shape[2], fr * fc)
    magnitude = np.where(np.isnan(blocks), np.inf, np.abs(blocks))
    pick = np.argmax(magnitude, axis=-1)[..., None]
    return np.take_along_axis(blocks, pick, axis=-1)[..., 0], (fr, fc)


def colour(value: float, top: float) -> tuple[int, int, int]:
    """Diverging: white at 0, POSITIVE at +top, NEGATIVE at -top, NAN for NaN; an infinity
    takes its end's colour."""
    if np.isnan(value):
        return NAN
    t = 1.0 if top == 0 or np.isinf(value) else min(abs(value) / top, 1.0)
    if value == 0:
        t = 0.0
    end = POSITIVE if value > 0 else NEGATIVE
    return (
        round(255 + (end[0] - 255) * t),
        round(255 + (end[1] - 255) * t),
        round(255 + (end[2] - 255) * t),
    )


def _svg(h: Heatmap) -> str:
    rows, cols = h.cells.shape
    size = max(4, min(28, 448 // max(cols, 1), 448 // max(rows, 1)))
    finite = np.abs(h.cells[np.isfinite(h.cells)])
    top = float(finite.max()) if finite.size else 0.0
    rects = []
    fr, fc = h.block
    for r in range(rows):
        for c in range(cols):
            v = float(h.cells[r, c])
            rgb = "rgb({},{},{})".format(*colour(v, top))
            at = (
                f"row {r}, col {c}"
                if (fr, fc) == (1, 1)
                else f"block rows {r * fr}+, cols {c * fc}+"
            )
            rects.append(
                f'<rect x="{c * size}" y="{r * size}" width="{size}" height="{size}" '
                f'fill="{rgb}"><title>{at}: {v:.6g}</title></rect>'
            )
    width, height = cols * size, rows * size
    return (
        f'<svg class="heatmap" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">{"".join(rects)}</svg>'
    )


def _heatmap_html(h: Heatmap, diagnosis: str | None) -> str:
    finite = np.abs(h.cells[np.isfinite(h.cells)])
    top = float(finite.max()) if finite.size else 0.0
    pooled_note = (
        ""
        if h.block == (1, 1)
        else f"; each cell the largest of {h.block[0]} x {h.block[1]} elements"
    )
    legend = (
        f'<div class="legend"><span>-{top:.3g}</span><span class="bar"></span>'
        f"<span>+{top:.3g}</span></div>"
    )
    rows = "; rows: every axis but the last, flattened" if len(h.shape) > 2 else ""
    caption = (
        f"{html.escape(h.left)} - {html.escape(h.right)}, shape {list(h.shape)}{rows}"
        f"{pooled_note}; grey: NaN"
    )
    looks = f'<p class="diagnosis">looks like: {html.escape(diagnosis)}</p>' if diagnosis else ""
    return (
        f'<figure class="diff"><figcaption>{caption}</figcaption>{_svg(h)}{legend}</figure>{looks}'
    )


def _tensor_html(view: TensorView, diagnosis: str | None) -> str:
    check = view.check
    where = f" (expect at {html.escape(check.expect_where)})" if check.expect_where else ""
    body = "\n".join(view.lines)
    return "".join(
        [
            f'<div class="tensor {"ok" if check.ok else "bad"}"><h4>{check.kind} of '
            f"'{html.escape(check.tensor)}'{where}</h4>",
            # The picture first: where the sources differ, then the numbers.
            _heatmap_html(view.heatmap, diagnosis) if view.heatmap is not None else "",
            f"<pre>{html.escape(body)}</pre>" if body else "",
            "</div>",
        ]
    )


def _case_html(result: CaseResult, view: CaseView | None) -> str:
    status = result.status
    opened = " open" if status != "passed" else ""
    tags = " ".join(result.tags)
    head = (
        f'<summary><span class="badge {status}">{status.upper()}</span> '
        f"<b>{html.escape(result.name)}</b> <small>{html.escape(result.file)}:{result.line}, "
        f"{result.duration * 1000:.0f} ms{' · ' + html.escape(tags) if tags else ''}</small>"
        "</summary>"
    )
    parts = [
        f'<section class="case" data-status="{status}" data-name="{html.escape(result.name)}" '
        f'data-tags="{html.escape(tags)}"><details{opened}>{head}'
    ]
    if result.xfail:
        parts.append(f'<p class="xfail">xfail: {html.escape(result.xfail)}</p>')
    if result.messages:
        parts.append(f'<pre class="messages">{html.escape(chr(10).join(result.messages))}</pre>')
    if result.notes:
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
        parts.append(f'<ul class="notes">{notes}</ul>')
    diagnosis = result.fault.diagnosis if result.fault is not None else None
    if view is not None:
        parts += [_tensor_html(t, diagnosis) for t in view.tensors]
        if view.problem:
            parts.append(f"<p>(the tensors could not be shown: {html.escape(view.problem)})</p>")
    parts.append("</details></section>")
    return "".join(parts)


def html_page(report: Report, views: dict[str, CaseView] | None = None) -> str:
    """The page; ``views`` by case name (`case_view`): without them each case shows its
    messages and verdicts only."""
    views = views or {}
    s = report.summary
    env = report.environment
    env_text = ""
    if env is not None:
        torch = f", torch {env.torch}" if env.torch else ""
        env_text = (
            f"numpy {env.numpy}{torch}, device {env.device}, python {env.python}, {env.timestamp}"
        )
    statuses = "".join(
        f'<label><input type="checkbox" data-status="{k}" checked> {k} ({n})</label> '
        for k, n in (
            ("failed", s.failed),
            ("error", sum(c.status == "error" for c in report.cases)),
            ("xpassed", s.xpassed),
            ("xfailed", s.xfailed),
            ("passed", s.passed),
        )
    )
    invalid = "".join(
        f"<li><code>{html.escape(f'{d.file}:{d.line}:{d.col}')}</code> "
        f"{html.escape(d.message)}</li>"
        for d in report.diagnostics
    )
    cases = sorted(report.cases, key=lambda c: _ORDER[c.status])
    body = "".join(_case_html(c, views.get(c.name)) for c in cases)
    title = f"gradcase: {count_line(s)}"
    return _PAGE.format(
        title=html.escape(title),
        count=html.escape(count_line(s)),
        env=html.escape(env_text),
        statuses=statuses,
        invalid=f'<h2>Invalid files</h2><ul class="invalid">{invalid}</ul>' if invalid else "",
        cases=body,
        css=_CSS,
        js=_JS,
    )


def write_html(report: Report, views: dict[str, CaseView], path: Path) -> None:
    write_text(path, html_page(report, views))


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em;margin:0 0 .3em} .env{color:#666}
.filter{margin:1em 0;padding:.6em;background:#f4f4f4;border-radius:4px}
.filter input[type=search]{width:24em;padding:.2em}
.case{border-top:1px solid #ddd;padding:.3em 0} .case[hidden]{display:none}
summary{cursor:pointer} small{color:#666}
.badge{display:inline-block;min-width:5.5em;text-align:center;font-weight:bold;
 border-radius:3px;padding:0 .3em;color:#fff}
.badge.passed{background:#2e7d32} .badge.failed{background:#6a1b9a}
.badge.error{background:#e65100} .badge.xfailed{background:#757575}
.badge.xpassed{background:#ad1457}
pre{background:#fafafa;border:1px solid #eee;padding:.4em;overflow-x:auto;font-size:12px}
pre.messages{white-space:pre-wrap}
.tensor{margin:.6em 0 .6em 1.2em} .tensor h4{margin:.2em 0}
.tensor.bad h4{color:#6a1b9a} .tensor p{margin:.2em 0;color:#444}
figure.diff{margin:.4em 0} figcaption{color:#555;font-size:12px}
svg.heatmap{border:1px solid #999;display:block;margin:.3em 0}
.legend{display:flex;align-items:center;gap:.4em;font-size:12px}
.legend .bar{display:inline-block;width:160px;height:10px;border:1px solid #999;
 background:linear-gradient(to right,rgb(5,113,176),#fff,rgb(202,0,32))}
.diagnosis{font-weight:bold}
"""

_JS = """
(function(){
  var q=document.getElementById('q'), shown=document.getElementById('shown');
  var boxes=[].slice.call(document.querySelectorAll('input[data-status]'));
  var cases=[].slice.call(document.querySelectorAll('section.case'));
  function apply(){
    var text=q.value.toLowerCase(), on={}, n=0;
    boxes.forEach(function(b){on[b.getAttribute('data-status')]=b.checked;});
    cases.forEach(function(c){
      var hay=(c.getAttribute('data-name')+' '+c.getAttribute('data-tags')).toLowerCase();
      var show=on[c.getAttribute('data-status')]&&hay.indexOf(text)>=0;
      c.hidden=!show; if(show){n++;}
    });
    shown.textContent='showing '+n+' of '+cases.length+' cases';
  }
  // A link may carry a filter: page.html#q=softmax&status=failed,error
  var given=new URLSearchParams(location.hash.slice(1));
  if(given.has('q')){q.value=given.get('q');}
  if(given.has('status')){
    var wanted=given.get('status').split(',');
    boxes.forEach(function(b){b.checked=wanted.indexOf(b.getAttribute('data-status'))>=0;});
  }
  q.addEventListener('input',apply);
  boxes.forEach(function(b){b.addEventListener('change',apply);});
  apply();
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{css}</style></head>
<body>
<h1>gradcase</h1>
<p><b id="count">{count}</b></p>
<p class="env">{env}</p>
<div class="filter"><input id="q" type="search" placeholder="filter by name or tag">
{statuses}<span id="shown"></span></div>
{invalid}
<div id="cases">{cases}</div>
<script>{js}</script>
</body></html>
"""
