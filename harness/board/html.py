"""The static HTML leaderboard (``leaderboard/index.html``), from result records alone.

One self-contained page: inline CSS and JavaScript, no external resource, so it works from
``file://`` offline.  Tabs: *Overall* and one per board (task x reference model).  Every table
sorts by a click on its header (numeric columns numerically; again to reverse).  Board tables
show every metric with its 95% CI, time and model calls per example, peak memory and device,
a hardware line from the records' provenance, the task tables stored in the records (e.g. the
fragility per-bucket table, collapsed) and the plots found for the board; every cell links to
the result record it comes from (``results/<task>/<model>/<submission>.json``).

Plots are picked up generically: every PNG under the leaderboard folder (outside
``results/``) named ``<task>__<model>[__<submission>].png`` (the convention of
:func:`tasks.fragility.plots.plot_path`), plus any ``*.png`` path that a record's tables
reference.  Output is deterministic: the same records and plots give the same bytes.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Iterable

from harness.board.leaderboard import OVERALL_RULE, Board, _metric_names, cost_mark, cpu_ms, overall, ranking_boards
from harness.engine.records import ResultRecord

INDEX = "index.html"


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(s)).strip("-") or "x"


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _tab_id(key: str) -> str:
    return "t-" + re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-")


# -- plots --------------------------------------------------------------------------------------

def find_plots(out_dir: Path, boards: list[Board],
               records: Iterable[tuple[ResultRecord, str]] = ()) -> dict[str, list[tuple[str, str, str]]]:
    """Board key -> [(relative png path, kind, submission or '')], sorted; key '' = unmatched."""
    out_dir = Path(out_dir)
    pngs = set()
    if out_dir.is_dir():
        pngs = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.png")
                if "results" not in p.relative_to(out_dir).parts[:1]}
    root = out_dir.resolve()
    for rec, _ in records:
        for rows in rec.tables.values():
            for row in rows:
                for v in row.values():  # a record's own plot path: inside the board folder, no link
                    if isinstance(v, str) and v.lower().endswith(".png") and _SAFE_HREF.fullmatch(v) \
                            and not Path(v).is_absolute() and ".." not in Path(v).parts:
                        p = out_dir / v
                        if p.is_file() and not p.is_symlink() and root in p.resolve().parents:
                            pngs.add(Path(v).as_posix())
    slugs = {(_slug(b.task), _slug(b.model)): b for b in boards}
    subs = {b.key: {_slug(r.submission.name): r.submission.name for _, r, _ in b.ranked}
            | {_slug(r.submission.name): r.submission.name for r, _ in b.failed} for b in boards}
    found: dict[str, list[tuple[str, str, str]]] = {}
    for rel in sorted(pngs):
        parts = Path(rel).stem.split("__")
        kind = Path(rel).parent.name if Path(rel).parent.name not in ("", ".") else "plot"
        board = slugs.get(tuple(parts[:2])) if len(parts) >= 2 else None
        if board is None:
            found.setdefault("", []).append((rel, kind, ""))
            continue
        if len(parts) >= 3 and parts[2] not in subs[board.key]:
            continue  # a plot of a submission no longer on the board (left over from an older build)
        sub = subs[board.key][parts[2]] if len(parts) >= 3 else ""
        found.setdefault(board.key, []).append((rel, kind, sub))
    return found


# -- formatting ---------------------------------------------------------------------------------

def _hardware(rec: ResultRecord) -> str:
    hw, p = rec.provenance.hardware, rec.provenance
    gpu = hw.get("cuda_device") or ("CUDA" if hw.get("cuda") else "no GPU")
    return (f"{hw.get('processor') or hw.get('machine')}, {hw.get('cpu_count')} CPUs, {hw.get('ram_gb')} GB RAM, "
            f"{gpu}; torch {p.packages.get('torch', '?')}, transformers {p.packages.get('transformers', '?')}, "
            f"Python {p.python}")


def _td(text: str, href: str, sort=None, cls: str = "", title: str = "") -> str:
    attrs = "" if sort is None else f' data-v="{_e(sort)}"'
    attrs += f' class="{cls}"' if cls else ""
    attrs += f' title="{_e(title)}"' if title else ""
    return f'<td{attrs}><a href="{_e(href)}">{text}</a></td>'


def _th(label: str, kind: str = "num", title: str = "", cls: str = "") -> str:
    t = f' title="{_e(title)}"' if title else ""
    c = f' {cls}' if cls else ""
    return f'<th class="sortable {kind}{c}" data-kind="{kind}" tabindex="0"{t}>{label}</th>'


def _score_cell(s, href: str, main: bool) -> str:
    if s is None:
        return _td("", href, "", "num")
    text = (f'<span class="v">{s.value:.3f}</span>'
            f'<span class="ci">[{s.ci_low:.3f}, {s.ci_high:.3f}]</span>')
    return _td(text, href, repr(float(s.value)), "num score" + (" main" if main else ""),
               f"{s.value:.6f}, 95% CI [{s.ci_low:.6f}, {s.ci_high:.6f}], n={s.n}")


_NUM = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INLINE = re.compile(r"\\([!-/:-@\[-`{-~])|`([^`]+)`|\*\*((?:\\.|[^*\\])+)\*\*"
                     r"|\[((?:\\.|[^\]\\])+)\]\(([^)\s]+)\)")
_SAFE_HREF = re.compile(r"(?![a-zA-Z][a-zA-Z0-9+.-]*:)(?!//)[A-Za-z0-9_.~/%#-]+")
"""Relative links only: no scheme (``javascript:``, ``data:``, ``http:``), no ``//host``."""


def _text(text: str) -> str:
    """Plain Markdown text as HTML: entities decoded (``&lt;`` from :func:`md_escape`), then escaped."""
    return _e(html.unescape(text))


def _inline(text: str) -> str:
    """Escape ``text`` and render the Markdown inline forms the board's notes use: backslash
    escapes (:func:`harness.board.leaderboard.md_escape`), `code`, **bold** and [label](relative link).
    A link to anything but a relative path renders as its label."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(_text(text[pos:m.start()]))
        if m.group(1) is not None:
            out.append(_e(m.group(1)))
        elif m.group(2) is not None:
            out.append(f"<code>{_e(m.group(2))}</code>")
        elif m.group(3) is not None:
            out.append(f"<strong>{_inline(m.group(3))}</strong>")
        else:
            label, href = _inline(m.group(4)), m.group(5)
            if href.startswith("#") or not _SAFE_HREF.fullmatch(href):  # page anchors have no target here
                out.append(label)
            else:
                out.append(f'<a href="{_e(href)}">{label}</a>')
        pos = m.end()
    out.append(_text(text[pos:]))
    return "".join(out)


def md_to_html(lines: list[str]) -> list[str]:
    """The Markdown subset that :mod:`harness.board.leaderboard` and :mod:`tasks.sanity.report`
    emit (headings, paragraphs, bullet lists, pipe tables) as HTML; tables become sortable."""
    out: list[str] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i].rstrip()
        if not line.strip():
            i += 1
            continue
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 1, 6)  # "##" -> h3: the panel title is h2
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < n and lines[i].startswith("|"):
                rows.append([c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", lines[i].strip())[1:-1]])
                i += 1
            head, body = rows[0], [r for r in rows[1:] if not all(set(c) <= set("-:") and c for c in r)]
            def kind(j):
                vals = [r[j] for r in body if j < len(r) and r[j]]
                return "num" if vals and all(_NUM.fullmatch(v) for v in vals) else "text"

            out.append('<div class="scroll"><table class="notes sortable-table"><thead><tr>'
                       + "".join(_th(_inline(h), kind(j)) for j, h in enumerate(head)) + "</tr></thead><tbody>")
            for r in body:
                out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>")
            out.append("</tbody></table></div>")
        elif line.startswith("- "):
            out.append("<ul class='notes'>")
            while i < n and lines[i].startswith("- "):
                out.append(f"<li>{_inline(lines[i][2:].strip())}</li>")
                i += 1
            out.append("</ul>")
        else:
            para = []
            while i < n and lines[i].strip() and not lines[i].startswith(("|", "#", "- ")):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p class='meta'>{_inline(' '.join(para))}</p>")
    return out


def _board_panel(b: Board, plots: list[tuple[str, str, str]], res: str = "results") -> str:
    metrics = _metric_names(b)
    heads = [_th("rank"), _th("submission", "text"), _th("version", "text")]
    for m in metrics:
        hib = next((r.scores[m].higher_is_better for _, r, _ in b.ranked if m in r.scores), b.higher_is_better)
        arrow = "&uarr;" if hib else "&darr;"
        ops = sorted({str(r.scores[m].params["operator"]) for _, r, _ in b.ranked
                      if m in r.scores and "operator" in r.scores[m].params})
        op = f"<small>operator {_e('/'.join(ops))}</small> " if ops else ""
        heads.append(_th(f"{_e(m)} {arrow}<br>{op}<small>[95% CI]</small>", "num",
                         f"{m}: {'higher' if hib else 'lower'} is better" + (" (main metric)" if m == b.main_metric else ""),
                         "main" if m == b.main_metric else ""))
    heads += [_th("ms/ex<br><small>p50</small>", title="wall time per example, median (batch time / batch size)",
                  cls="sep"),
              _th("ms/ex<br><small>p95</small>", title="wall time per example, 95th percentile"),
              _th("CPU ms/ex", title="user + system CPU time per example (sandboxed runs: measured by the harness "
                                     "from outside the worker)"),
              _th("fwd/ex", title="classifier sequences forwarded per example; * self-reported by the worker, "
                                  "! below the submission's declared [passes]"),
              _th("bwd/ex", title="classifier sequences back-propagated per example"),
              _th("mlm/ex", title="masked-LM sequences per example"),
              _th("peak RSS<br><small>MB</small>", title="peak resident memory"),
              _th("device", "text"), _th("record", "text")]
    sub_plots = {}
    for rel, kind, sub in plots:
        sub_plots.setdefault(sub, []).append((rel, kind))
    rows = []
    for rank, r, rel in b.ranked:
        href = f"{res}/{rel}"
        cells = [_td(str(rank), href, rank, "num rank" + (" first" if rank == 1 else "")),
                 _td(_e(r.submission.name), href, r.submission.name, "name"),
                 _td(_e(r.submission.version), href, r.submission.version, "muted")]
        cells += [_score_cell(r.scores.get(m), href, m == b.main_metric) for m in metrics]
        t, c = r.timing, r.cost
        cells += [_td(f"{t.per_example_p50_s * 1000:.2f}", href, repr(t.per_example_p50_s), "num sep"),
                  _td(f"{t.per_example_p95_s * 1000:.2f}", href, repr(t.per_example_p95_s), "num"),
                  _td(cpu_ms(r), href, repr(t.cpu_total_s or 0.0), "num"),
                  _td(f"{c.forward_per_example:.1f}{cost_mark(r)}", href, repr(c.forward_per_example), "num"),
                  _td(f"{c.backward_per_example:.1f}{cost_mark(r)}", href, repr(c.backward_per_example), "num"),
                  _td(f"{c.mlm_per_example:.1f}{cost_mark(r)}", href, repr(c.mlm_per_example), "num"),
                  _td(f"{r.memory.peak_rss_mb:.0f}", href, repr(r.memory.peak_rss_mb), "num"),
                  _td(_e(t.device), href, t.device, "muted"),
                  _td("json", href, rel, "link")]
        rows.append(f'<tr data-submission="{_e(r.submission.name)}">' + "".join(cells) + "</tr>")
    hardware = sorted({_hardware(r) for _, r, _ in b.ranked} | {_hardware(r) for r, _ in b.failed})
    mlm = f" Masked LM: {_e(b.mlm_description)}." if b.mlm_description else ""
    L = [f'<section class="panel" id="{_tab_id(b.key)}" data-tab="{_e(b.key)}" hidden>',
         f"<h2>{_e(b.task)} <span class='muted'>v{_e(b.task_version)}</span> on {_e(b.model)}</h2>",
         f"<p class='meta'>Model: {_e(b.model_description)}, dev accuracy {b.dev_accuracy:.4f}. Main metric: "
         f"<code>{_e(b.main_metric)}</code> ({'higher' if b.higher_is_better else 'lower'} is better).{mlm}</p>",
         "<p class='meta'>Hardware: " + " | ".join(_e(h) for h in hardware) + "</p>",
         f'<div class="scroll"><table class="board sortable-table" data-board="{_e(b.key)}">',
         "<thead><tr>" + "".join(heads) + "</tr></thead>", "<tbody>", *rows, "</tbody></table></div>"]
    if b.failed:
        L += ["<h3>Failed submissions <span class='muted'>(not ranked)</span></h3>",
              '<div class="scroll"><table class="failed sortable-table"><thead><tr>'
              + _th("submission", "text") + _th("stage", "text") + _th("error", "text") + "</tr></thead><tbody>"]
        for r, rel in b.failed:
            href = f"{res}/{rel}"
            msg = f"{r.error.type}: {r.error.message}"[:300]
            L.append("<tr>" + _td(_e(r.submission.name), href, r.submission.name, "name")
                     + _td(_e(r.error.stage), href, r.error.stage) + _td(_e(msg), href, msg, "err") + "</tr>")
        L.append("</tbody></table></div>")
    from harness.board.leaderboard import _render_metric_params
    from tasks.sanity import report as sanity_report

    L += md_to_html(_render_metric_params(b, metrics) + sanity_report.board_notes(b))
    L += _tables_section(b, res)
    if plots:
        L += ["<h3>Plots</h3>", '<div class="plots">']
        for sub in sorted(sub_plots):
            for rel, kind in sub_plots[sub]:
                cap = f"{kind}: {sub}" if sub else kind
                L.append(f'<figure><a href="{_e(rel)}"><img src="{_e(rel)}" alt="{_e(cap)}"></a>'
                         f"<figcaption>{_e(cap)}</figcaption></figure>")
        L.append("</div>")
    L.append("</section>")
    return "\n".join(L)


MAX_TABLE_ROWS = 60
"""Task tables with more rows per record than this, and per-input tables, stay in the records."""


def _cell_text(v) -> tuple[str, object]:
    if isinstance(v, bool) or v is None:
        return ("" if v is None else str(v).lower()), ("" if v is None else str(v))
    if isinstance(v, int):
        return str(v), v
    if isinstance(v, float):
        return (f"{v:.3f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"), repr(v)
    text = v if isinstance(v, str) else str(v)
    return _e(text), text


def _tables_section(b: Board, res: str) -> list[str]:
    """The task-specific tables of the board's records (e.g. fragility per bucket), one
    collapsible sortable table per name, rows of every submission."""
    names = sorted({n for _, r, _ in b.ranked for n in r.tables})
    out = []
    for name in names:
        items = [(r, rel, r.tables.get(name) or []) for _, r, rel in b.ranked]
        if name.endswith("per_input") or not any(rows for _, _, rows in items) \
                or any(len(rows) > MAX_TABLE_ROWS for _, _, rows in items):
            continue
        cols: list[str] = []
        for _, _, rows in items:
            for row in rows:
                cols += [k for k in row if k not in cols]
        text_cols = [c for c in cols if all(isinstance(row.get(c), str) for _, _, rows in items for row in rows if c in row)]
        cols = text_cols + [c for c in cols if c not in text_cols]
        heads = [_th("submission", "text")] + [_th(_e(c), "text" if c in text_cols else "num") for c in cols]
        body = []
        for r, rel, rows in items:
            href = f"{res}/{rel}"
            for row in rows:
                cells = [_td(_e(r.submission.name), href, r.submission.name, "name")]
                for c in cols:
                    text, sort = _cell_text(row.get(c))
                    cells.append(_td(text, href, sort, "" if c in text_cols else "num"))
                body.append("<tr>" + "".join(cells) + "</tr>")
        title = name.replace("_", " ")
        out += [f'<details class="task-table"><summary>{_e(title)} <span class="muted">({len(body)} rows, from '
                f"the records' <code>tables.{_e(name)}</code>)</span></summary>",
                f'<div class="scroll"><table class="sortable-table" data-table="{_e(name)}"><thead><tr>'
                + "".join(heads) + "</tr></thead><tbody>", *body, "</tbody></table></div></details>"]
    return (["<h3>Task tables</h3>"] + out) if out else []


def _overall_panel(boards: list[Board], n_records: int, loose: list[tuple[str, str, str]], res: str = "results") -> str:
    rows = overall(boards)
    heads = [_th("rank"), _th("submission", "text"), _th("mean task rank"), _th("boards", title="boards with a result")]
    heads += [_th(f"{_e(b.task)}<br><small>{_e(b.model)}</small>", title=f"rank on {b.key} by {b.main_metric}")
              for b in boards]
    body = []
    for rank, name, mean, k in rows:
        first_href = next((f"{res}/{rel}" for b in boards for _, r, rel in b.ranked if r.submission.name == name),
                          next((f"{res}/{rel}" for b in boards for r, rel in b.failed if r.submission.name == name), "#"))
        cells = [_td(str(rank), first_href, rank, "num rank" + (" first" if rank == 1 else "")),
                 _td(_e(name), first_href, name, "name"),
                 _td(f"{mean:.2f}", first_href, repr(mean), "num"),
                 _td(f"{k}/{len(ranking_boards(boards))}", first_href, k, "num")]
        for b in boards:
            hit = [(rk, rel) for rk, r, rel in b.ranked if r.submission.name == name]
            fail = [rel for r, rel in b.failed if r.submission.name == name]
            if hit:
                rk, rel = hit[0]
                cells.append(_td(f"{rk}<small>/{len(b.ranked)}</small>", f"{res}/{rel}", rk, "num"))
            elif fail:
                cells.append(_td("failed", f"{res}/{fail[0]}", len(b.ranked) + 1, "num err"))
            else:
                cells.append('<td class="num muted plain" data-v="">&ndash;</td>')
        body.append(f'<tr data-submission="{_e(name)}">' + "".join(cells) + "</tr>")
    L = ['<section class="panel" id="t-overall" data-tab="overall">', "<h2>Overall</h2>",
         f"<p class='meta'>Rule: {_e(OVERALL_RULE)}. Built from {n_records} result records; "
         "every cell links to the record it comes from.</p>",
         '<div class="scroll"><table class="overall sortable-table">',
         "<thead><tr>" + "".join(heads) + "</tr></thead><tbody>", *body, "</tbody></table></div>"]
    if loose:
        L += ["<h3>Other plots</h3>", '<div class="plots">']
        for rel, kind, _ in loose:
            L.append(f'<figure><a href="{_e(rel)}"><img src="{_e(rel)}" alt="{_e(rel)}"></a>'
                     f"<figcaption>{_e(rel)}</figcaption></figure>")
        L.append("</div>")
    L.append("</section>")
    return "\n".join(L)


CSS = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#fff;--head:#f6f8fa;--accent:#0969da;--main:#fff8c5;--first:#dafbe1}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{padding:18px 28px 0;border-bottom:1px solid var(--line);background:var(--head)}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:0 0 12px;color:var(--muted)}
nav.tabs{display:flex;flex-wrap:wrap;gap:2px}
nav.tabs button{font:inherit;border:1px solid transparent;border-bottom:none;background:none;padding:7px 14px;
  cursor:pointer;border-radius:6px 6px 0 0;color:var(--muted);margin-bottom:-1px}
nav.tabs button:hover{color:var(--fg);background:#eaeef2}
nav.tabs button.active{background:var(--bg);border-color:var(--line);color:var(--fg);font-weight:600}
nav.tabs button small{color:var(--muted);font-weight:400}
main{padding:8px 28px 40px}
h2{font-size:18px;margin:16px 0 6px}
h3{font-size:15px;margin:22px 0 8px}
p.meta{margin:2px 0;color:var(--muted);max-width:1100px}
code{background:var(--head);padding:1px 4px;border-radius:4px}
.muted{color:var(--muted)}
.scroll{overflow-x:auto;margin-top:10px;border:1px solid var(--line);border-radius:6px;width:fit-content;max-width:100%}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:0;border-bottom:1px solid var(--line);white-space:nowrap}
th{background:var(--head);text-align:left;font-weight:600;padding:6px 10px;position:sticky;top:0;
  cursor:pointer;user-select:none;vertical-align:bottom;line-height:1.2}
th small{font-weight:400;color:var(--muted)}
th.num{text-align:right}
table.notes td{padding:4px 10px}
ul.notes{margin:6px 0 10px;padding-left:22px;color:var(--muted)}
th.main{background:#fff1a8}
th.sortable::after{content:" \\2195";color:#afb8c1;font-size:11px}
th[aria-sort=ascending]::after{content:" \\25B2";color:var(--accent)}
th[aria-sort=descending]::after{content:" \\25BC";color:var(--accent)}
td a{display:block;padding:5px 10px;color:inherit;text-decoration:none}
td a:hover{background:#ddf4ff;color:var(--accent)}
td.num{text-align:right}
td.plain{padding:5px 10px}
th.sep,td.sep{border-left:2px solid var(--line)}
td.score .v{font-weight:600}
td.score .ci{display:block;font-size:11px;color:var(--muted)}
td.main{background:var(--main)}
td.rank.first{background:var(--first);font-weight:700}
td.name{font-weight:600}
td.link a{color:var(--accent)}
td.err{color:#cf222e;white-space:normal;max-width:640px}
tbody tr:nth-child(even) td:not(.main):not(.first){background:#fafbfc}
table.board td.name{position:sticky;left:0;z-index:1;background:#fff;box-shadow:1px 0 0 var(--line)}
table.board th:nth-child(2){position:sticky;left:0;z-index:3;box-shadow:1px 0 0 var(--line)}
th{z-index:2}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:14px}
figure{margin:0;border:1px solid var(--line);border-radius:6px;padding:8px;background:#fff}
figure img{max-width:100%;display:block;margin:auto}
figcaption{font-size:12px;color:var(--muted);text-align:center;margin-top:4px}
footer{padding:0 28px 24px;color:var(--muted);font-size:12px}
details.task-table{margin:6px 0}
details.task-table summary{cursor:pointer;font-weight:600}
details.task-table .scroll{margin:6px 0 12px}
"""

JS = """
(function(){
  var buttons = Array.prototype.slice.call(document.querySelectorAll('nav.tabs button'));
  var panels = Array.prototype.slice.call(document.querySelectorAll('section.panel'));
  function show(tab){
    var found = panels.some(function(p){return p.getAttribute('data-tab') === tab;});
    if(!found){ tab = 'overall'; }
    panels.forEach(function(p){ p.hidden = p.getAttribute('data-tab') !== tab; });
    buttons.forEach(function(b){
      var on = b.getAttribute('data-tab') === tab;
      b.classList.toggle('active', on); b.setAttribute('aria-selected', on ? 'true' : 'false');
    });
    return tab;
  }
  buttons.forEach(function(b){
    b.addEventListener('click', function(){
      var tab = show(b.getAttribute('data-tab'));
      try { location.hash = 'tab=' + encodeURIComponent(tab); } catch(e) {}
    });
  });
  var h = decodeURIComponent((location.hash || '').replace(/^#tab=/, ''));
  show(h || 'overall');

  function key(td, kind){
    var v = td ? td.getAttribute('data-v') : null;
    if(v === null){ v = td ? td.textContent.trim() : ''; }
    if(v === ''){ return null; }
    if(kind === 'num'){ var x = parseFloat(v); return isNaN(x) ? null : x; }
    return v.toLowerCase();
  }
  function sortBy(th){
    var table = th.closest('table'), tbody = table.tBodies[0];
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var kind = th.getAttribute('data-kind') || 'text';
    var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    Array.prototype.forEach.call(th.parentNode.children, function(o){ o.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.forEach(function(r, i){ r._i = i; });
    rows.sort(function(a, b){
      var x = key(a.cells[idx], kind), y = key(b.cells[idx], kind);
      if(x === null && y === null){ return a._i - b._i; }
      if(x === null){ return 1; }
      if(y === null){ return -1; }
      if(x < y){ return -dir; }
      if(x > y){ return dir; }
      return a._i - b._i;
    });
    rows.forEach(function(r){ tbody.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll('th.sortable'), function(th){
    th.addEventListener('click', function(){ sortBy(th); });
    th.addEventListener('keydown', function(e){ if(e.key === 'Enter' || e.key === ' '){ e.preventDefault(); sortBy(th); } });
  });
})();
"""


def render_html(boards: list[Board], n_records: int, plots: dict[str, list[tuple[str, str, str]]],
                res: str = "results") -> str:
    """The page; ``res``: the results folder relative to the page (record links)."""
    tabs = ['<button type="button" data-tab="overall" role="tab">Overall</button>']
    tabs += [f'<button type="button" data-tab="{_e(b.key)}" role="tab">{_e(b.task)} <small>{_e(b.model)}</small></button>'
             for b in boards]
    panels = [_overall_panel(boards, n_records, plots.get("", []), res)]
    panels += [_board_panel(b, plots.get(b.key, []), res) for b in boards]
    from tasks.sanity import report as sanity_report

    audit = sanity_report.render_sections(boards)
    if audit:  # the metric-bias matrix and the sanity checks (T5), as on the Markdown board
        tabs.append('<button type="button" data-tab="bias-sanity" role="tab">Bias &amp; sanity</button>')
        panels.append('<section class="panel" id="t-bias-sanity" data-tab="bias-sanity" hidden>'
                      "<h2>Metric bias and sanity checks</h2>" + "\n".join(md_to_html(audit)) + "</section>")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">', "<title>attriboard leaderboard</title>",
        f"<style>{CSS}</style>", "</head>", "<body>", "<header>", "<h1>attriboard leaderboard</h1>",
        f"<p>Feature-attribution explainers ranked per task board and overall. Scores are means over the evaluated "
        f"examples with percentile-bootstrap 95% confidence intervals (1,000 resamples); time is wall time per example, "
        f"cost the model sequences per example. Click a column header to sort, a cell to open its result record.</p>",
        f'<nav class="tabs" role="tablist">{"".join(tabs)}</nav>', "</header>", "<main>", *panels, "</main>",
        f"<footer>Generated by <code>attriboard leaderboard</code> from {n_records} result records in "
        "<code>results/</code>; do not edit by hand. Verify any record with <code>attriboard verify</code>.</footer>",
        f"<script>{JS}</script>", "</body>", "</html>", ""])


def write_html(boards: list[Board], records: list[tuple[ResultRecord, str]], out_dir: Path,
               results_dir: Path | None = None) -> Path:
    """Write ``out_dir/index.html`` (call after the plots are written, so they are found).
    Record links point into ``results_dir`` (default ``out_dir/results``), relative to the page."""
    out_dir = Path(out_dir)
    res = "results" if results_dir is None else os.path.relpath(Path(results_dir).resolve(), out_dir.resolve())
    path = out_dir / INDEX
    text = render_html(boards, len(records), find_plots(out_dir, boards, records), Path(res).as_posix())
    path.write_text(text, encoding="utf-8")
    return path
