"""The static HTML leaderboard (``index.html``), rendered from a :class:`~harness.board.model.BoardModel`.

One self-contained page: inline CSS and JavaScript, no external resource, so it works from
``file://`` offline.  Tabs: *Overall*, one per board (task x reference model), and one per
:class:`~harness.board.model.Tab` of the page-level task sections.  Every table sorts by a
click on its header (numeric columns numerically; again to reverse).  Board tables show every
metric with its 95% CI, time and model calls per example, peak memory and device, a hardware
line from the records' provenance, the notes and task sections, the task tables stored in the
records (collapsed) and the plots found for the board; every cell links to the result record
it comes from.  Every record string is escaped with :func:`html.escape`; links are relative
paths only.  Output is deterministic: the same model gives the same bytes.
"""

from __future__ import annotations

import html
import re

from harness.board.model import (BoardModel, BulletList, Code, Heading, Lit, Link, Paragraph, Score, Strong,
                                 Tab, Table, TaskBoard, Text)
from harness.board.text import SAFE_HREF, first_url, is_relative_link, md_link_target

FORMAT = "html"
INDEX = "index.html"
DEFAULT_TAB = Tab("sections", "More", "Task sections")
"""The tab of page-level sections that name none."""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _tab_id(key: str) -> str:
    return "t-" + re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-")


def _td(text: str, href: str, sort=None, cls: str = "", title: str = "") -> str:
    attrs = "" if sort is None else f' data-v="{_e(sort)}"'
    attrs += f' class="{cls}"' if cls else ""
    attrs += f' title="{_e(title)}"' if title else ""
    return f'<td{attrs}><a href="{_e(href)}">{text}</a></td>'


def _th(label: str, kind: str = "num", title: str = "", cls: str = "") -> str:
    t = f' title="{_e(title)}"' if title else ""
    c = f' {cls}' if cls else ""
    return f'<th class="sortable {kind}{c}" data-kind="{kind}" tabindex="0"{t}>{label}</th>'


def _score_cell(s: Score | None, href: str, main: bool) -> str:
    if s is None:
        return _td("", href, "", "num" + ("" if main else " secondary"))
    text = (f'<span class="v">{s.value:.3f}</span>'
            f'<span class="ci">[{s.ci_low:.3f}, {s.ci_high:.3f}]</span>')
    return _td(text, href, repr(float(s.value)), "num score" + (" main" if main else " secondary"),
               f"{s.value:.6f}, 95% CI [{s.ci_low:.6f}, {s.ci_high:.6f}], n={s.n}")


def _name_cell(name: str, href: str, paper: str | None, code: str | None) -> str:
    """The submission cell: its name linking to the record, then its declared paper and code
    (plain http(s) URLs only; anything else is not linked)."""
    urls = ((label, first_url(text)) for label, text in (("paper", paper), ("code", code)))
    links = [f'<a class="ext" href="{_e(u)}" rel="noopener noreferrer" title="{_e(text or "")}">{label}</a>'
             for (label, u), text in zip(urls, (paper, code)) if u]
    extra = f' <small class="links">{" ".join(links)}</small>' if links else ""
    return f'<td data-v="{_e(name)}" class="name"><a href="{_e(href)}">{_e(name)}</a>{extra}</td>'


def _board_meta(b: TaskBoard) -> list[str]:
    dates = "" if not b.dates else b.dates[0] if b.dates[0] == b.dates[-1] else f"{b.dates[0]} to {b.dates[-1]}"
    L = [f"<p class='meta'>Examples: {_e(', '.join(str(n) for n in b.n_examples))}; records made {_e(dates)} at "
         f"harness commit {_e(', '.join(b.commits))}.</p>"]
    if b.not_counted:
        L.append(f"<p class='warn'><strong>Not counted in the overall rank:</strong> {_e(b.not_counted)}.</p>")
    L += [f"<p class='warn'><strong>Warning:</strong> {_e(f)}.</p>" for f in b.flags]
    return L


# -- structured text ----------------------------------------------------------------------------

_NUM = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def spans(items) -> str:
    """Spans as HTML: every text escaped; a link to anything but a relative path (or to a
    Markdown anchor) renders as its label."""
    out = []
    for s in items:
        if isinstance(s, Lit):
            out.append(_e(html.unescape(s.text)))
        elif isinstance(s, Text):
            out.append(_e(s.text))
        elif isinstance(s, Code):
            out.append(f"<code>{_e(s.text)}</code>")
        elif isinstance(s, Strong):
            out.append(f"<strong>{spans(s.spans)}</strong>")
        elif isinstance(s, Link):
            href = md_link_target(s.href)
            if s.href.startswith("#") or not is_relative_link(s.href) or not SAFE_HREF.fullmatch(href):
                out.append(spans(s.label))
            else:
                out.append(f'<a href="{_e(href)}">{spans(s.label)}</a>')
        else:
            raise TypeError(f"not a span: {s!r}")
    return "".join(out)


def _inline(items) -> str:
    return spans(items).strip()


def _is_num(cell) -> bool | None:
    """True / False: a numeric / text cell; None: an empty one."""
    if not all(isinstance(s, (Lit, Text)) for s in cell):
        return False
    t = "".join(s.text for s in cell).strip()
    return None if not t else bool(_NUM.fullmatch(t))


def blocks(items) -> list[str]:
    """Structured blocks as HTML lines; tables become sortable."""
    out: list[str] = []
    for b in items:
        if isinstance(b, Heading):
            level = min(b.level + 1, 6)  # "##" -> h3: the panel title is h2
            out.append(f"<h{level}>{_inline(b.text)}</h{level}>")
        elif isinstance(b, Paragraph):
            out.append(f"<p class='meta'>{_inline(b.text)}</p>")
        elif isinstance(b, BulletList):
            out.append("<ul class='notes'>")
            out += [f"<li>{_inline(item)}</li>" for item in b.items]
            out.append("</ul>")
        elif isinstance(b, Table):
            def kind(j):
                vals = [_is_num(r[j]) for r in b.rows if j < len(r)]
                vals = [v for v in vals if v is not None]
                return "num" if vals and all(vals) else "text"

            out.append('<div class="scroll"><table class="notes sortable-table"><thead><tr>'
                       + "".join(_th(_inline(h), kind(j)) for j, h in enumerate(b.header)) + "</tr></thead><tbody>")
            for r in b.rows:
                out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>")
            out.append("</tbody></table></div>")
        else:
            raise TypeError(f"not a block: {b!r}")
    return out


def _plots(plots) -> list[str]:
    L = ['<div class="plots">']
    for p in plots:
        L.append(f'<figure><a href="{_e(p.path)}"><img src="{_e(p.path)}" alt="{_e(p.alt)}"></a>'
                 f"<figcaption>{_e(p.alt)}</figcaption></figure>")
    L.append("</div>")
    return L


def section_lines(sections) -> list[str]:
    L: list[str] = []
    for s in sections:
        if FORMAT in s.formats:
            L += blocks(s.blocks)
            if s.plots:
                L += _plots(s.plots)
    return L


# -- panels -------------------------------------------------------------------------------------

def _board_panel(b: TaskBoard, res: str = "results") -> str:
    heads = [_th("rank"), _th("submission", "text"), _th("version", "text")]
    for c in b.columns:
        arrow = "&uarr;" if c.higher_is_better else "&darr;"
        op = f"<small>operator {_e('/'.join(c.operators))}</small> " if c.operators else ""
        heads.append(_th(f"{_e(c.metric)} {arrow}<br>{op}<small>[95% CI]</small>", "num",
                         f"{c.metric}: {'higher' if c.higher_is_better else 'lower'} is better"
                         + (" (main metric)" if c.main else ""), "main" if c.main else "secondary"))
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
    rows = []
    for r in b.rows:
        href = f"{res}/{r.record}"
        cells = [_td(html.escape(r.rank_group), href, r.rank, "num rank" + (" first" if r.rank == 1 else "")),
                 _name_cell(r.submission, href, r.paper, r.code),
                 _td(_e(r.version), href, r.version, "muted")]
        cells += [_score_cell(s, href, c.main) for c, s in zip(b.columns, r.scores)]
        m = r.cost_mark
        cells += [_td(f"{r.p50_s * 1000:.2f}", href, repr(r.p50_s), "num sep"),
                  _td(f"{r.p95_s * 1000:.2f}", href, repr(r.p95_s), "num"),
                  _td(r.cpu_ms, href, repr(r.cpu_total_s or 0.0), "num"),
                  _td(f"{r.forward_per_example:.1f}{m}", href, repr(r.forward_per_example), "num"),
                  _td(f"{r.backward_per_example:.1f}{m}", href, repr(r.backward_per_example), "num"),
                  _td(f"{r.mlm_per_example:.1f}{m}", href, repr(r.mlm_per_example), "num"),
                  _td(f"{r.peak_rss_mb:.0f}", href, repr(r.peak_rss_mb), "num"),
                  _td(_e(r.device), href, r.device, "muted"),
                  _td("json", href, r.record, "link")]
        rows.append(f'<tr data-submission="{_e(r.submission)}">' + "".join(cells) + "</tr>")
    mlm = f" Masked LM: {_e(b.mlm_description)}." if b.mlm_description else ""
    n_secondary = sum(1 for c in b.columns if not c.main)
    L = [f'<section class="panel" id="{_tab_id(b.key)}" data-tab="{_e(b.key)}" hidden>',
         f"<h2>{_e(b.task)} <span class='muted'>v{_e(b.task_version)}</span> on {_e(b.model)}</h2>",
         f"<p class='meta'>Model: {_e(b.model_description)}, dev accuracy {b.dev_accuracy:.4f}. Main metric: "
         f"<code>{_e(b.main_metric)}</code> ({'higher' if b.higher_is_better else 'lower'} is better).{mlm}</p>",
         "<p class='meta'>Hardware: " + " | ".join(_e(h) for h in b.hardware) + "</p>",
         *_board_meta(b),
         f"<p class='meta'>Rank groups (a range such as 2-4 is a statistical tie): {_e(b.rank_test)}.</p>",
         *([f'<p><button type="button" class="toggle-secondary" aria-pressed="false">show {n_secondary} secondary '
            f'metric{"s" if n_secondary != 1 else ""}</button></p>'] if n_secondary else []),
         f'<div class="scroll"><table class="board sortable-table" data-board="{_e(b.key)}">',
         "<thead><tr>" + "".join(heads) + "</tr></thead>", "<tbody>", *rows, "</tbody></table></div>"]
    if b.failed:
        L += ["<h3>Failed submissions <span class='muted'>(not ranked)</span></h3>",
              '<div class="scroll"><table class="failed sortable-table"><thead><tr>'
              + _th("submission", "text") + _th("stage", "text") + _th("error", "text") + "</tr></thead><tbody>"]
        for f in b.failed:
            href = f"{res}/{f.record}"
            msg = f"{f.error_type}: {f.message}"[:300]
            L.append("<tr>" + _td(_e(f.submission), href, f.submission, "name")
                     + _td(_e(f.stage), href, f.stage) + _td(_e(msg), href, msg, "err") + "</tr>")
        L.append("</tbody></table></div>")
    L += blocks(b.notes)
    L += section_lines(b.sections)
    L += _tables_section(b, res)
    if b.plots:
        L += ["<h3>Plots</h3>"] + _plots(b.plots)
    L.append("</section>")
    return "\n".join(L)


def _cell_text(v) -> tuple[str, object]:
    if isinstance(v, bool) or v is None:
        return ("" if v is None else str(v).lower()), ("" if v is None else str(v))
    if isinstance(v, int):
        return str(v), v
    if isinstance(v, float):
        return (f"{v:.3f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"), repr(v)
    text = v if isinstance(v, str) else str(v)
    return _e(text), text


def _tables_section(b: TaskBoard, res: str) -> list[str]:
    """The task tables of the board's records (e.g. fragility per bucket), one collapsible
    sortable table per name, rows of every submission."""
    out = []
    for t in b.tables:
        heads = [_th("submission", "text")] + [_th(_e(c), "text" if c in t.text_columns else "num") for c in t.columns]
        body = []
        for sub, rel, values in t.rows:
            href = f"{res}/{rel}"
            cells = [_td(_e(sub), href, sub, "name")]
            for c, v in zip(t.columns, values):
                text, sort = _cell_text(v)
                cells.append(_td(text, href, sort, "" if c in t.text_columns else "num"))
            body.append("<tr>" + "".join(cells) + "</tr>")
        title = t.name.replace("_", " ")
        out += [f'<details class="task-table"><summary>{_e(title)} <span class="muted">({len(body)} rows, from '
                f"the records' <code>tables.{_e(t.name)}</code>)</span></summary>",
                f'<div class="scroll"><table class="sortable-table" data-table="{_e(t.name)}"><thead><tr>'
                + "".join(heads) + "</tr></thead><tbody>", *body, "</tbody></table></div></details>"]
    return (["<h3>Task tables</h3>"] + out) if out else []


def _overall_panel(model: BoardModel, res: str = "results") -> str:
    boards = model.boards
    heads = [_th("rank"), _th("submission", "text"), _th("mean task rank"),
             _th("boards", title="counted boards with a score")]
    for b in boards:
        why = "diagnostic, not counted" if b.audit else (f"not counted: {b.not_counted}" if b.not_counted else "counted")
        heads.append(_th(f"{_e(b.task)}<br><small>{_e(b.model)}<br>{_e(b.main_metric)}, n="
                         f"{_e('/'.join(str(n) for n in b.n_examples))}</small>",
                         title=f"rank on {b.key} by {b.main_metric} (and the score); {why}",
                         cls="" if b.counted else "muted"))
    body = []
    for o in model.overall:
        first_href = "#" if o.first_record is None else f"{res}/{o.first_record}"
        cells = [_td(str(o.rank), first_href, o.rank, "num rank" + (" first" if o.rank == 1 else "")),
                 _name_cell(o.submission, first_href, o.paper, o.code),
                 _td(f"{o.mean_rank:.2f}", first_href, repr(o.mean_rank), "num"),
                 _td(f"{o.n_with_result}/{model.n_ranking_boards}", first_href, o.n_with_result, "num")]
        for b, c in zip(boards, o.cells):
            extra = "" if b.counted else " muted"
            if c is None:
                cells.append(f'<td class="num muted plain" data-v="">{"not run" if b.counted else "&ndash;"}</td>')
            elif c.rank is not None:
                cells.append(_td(f"{c.rank}<small>/{c.n_ranked}</small> <span class='v'>{c.value:.3f}</span>",
                                 f"{res}/{c.record}", c.rank, "num" + extra))
            else:
                cells.append(_td("failed", f"{res}/{c.record}", c.n_ranked + 1, "num err" + extra))
        body.append(f'<tr data-submission="{_e(o.submission)}">' + "".join(cells) + "</tr>")
    info = []
    for b in boards:
        dates = "" if not b.dates else b.dates[0] if b.dates[0] == b.dates[-1] else f"{b.dates[0]} to {b.dates[-1]}"
        status = "diagnostic" if b.audit else ("not counted: " + b.not_counted if b.not_counted else "counted")
        info.append("<tr>" + "".join(f"<td>{x}</td>" for x in (
            _e(b.key), f"<code>{_e(b.main_metric)}</code>", _e("/".join(str(n) for n in b.n_examples)),
            _e(f"{b.model_description}, dev accuracy {b.dev_accuracy:.3f}"), _e(dates), _e(", ".join(b.commits)),
            _e(status) + "".join(f"<br><span class='warn'>{_e(f)}</span>" for f in b.flags))) + "</tr>")
    L = ['<section class="panel" id="t-overall" data-tab="overall">', "<h2>Overall</h2>",
         f"<p class='meta'>Rule: {_e(model.overall_rule)}. Built from {model.n_records} result records; "
         "every cell links to the record it comes from. A board cell: rank / ranked submissions, and the main "
         "score.</p>",
         '<div class="scroll"><table class="overall sortable-table">',
         "<thead><tr>" + "".join(heads) + "</tr></thead><tbody>", *body, "</tbody></table></div>",
         "<h3>Boards</h3>", '<div class="scroll"><table class="boards-info notes"><thead><tr>'
         + "".join(f"<th>{h}</th>" for h in ("board", "main metric", "n", "reference model", "records made",
                                               "harness commit", "in the overall rank")) + "</tr></thead><tbody>",
         *info, "</tbody></table></div>"]
    if model.loose_plots:
        L += ["<h3>Other plots</h3>"] + _plots(model.loose_plots)
    L.append("</section>")
    return "\n".join(L)


def _glossary_panel(model: BoardModel) -> str:
    rows = "".join(f"<tr><td><code>{_e(g.metric)}</code></td><td>{'higher' if g.higher_is_better else 'lower'}</td>"
                   f"<td>{_e(g.definition)}</td><td>{_e(g.reference)}</td></tr>" for g in model.glossary)
    return ('<section class="panel" id="t-metrics" data-tab="metrics" hidden><h2>Metrics</h2>'
            "<p class='meta'>Every metric on this page, its definition and the reference it follows "
            "(docs/METRICS.md has the formulas and every difference from the references).</p>"
            '<div class="scroll"><table class="glossary notes"><thead><tr><th>metric</th><th>better</th>'
            f"<th>definition</th><th>reference</th></tr></thead><tbody>{rows}</tbody></table></div></section>")


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
table.board:not(.show-secondary) .secondary{display:none}
button.toggle-secondary{font:inherit;padding:3px 10px;cursor:pointer}
p.warn,span.warn{color:#9a6700}
small.links a.ext{margin-left:4px}
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
  Array.prototype.forEach.call(document.querySelectorAll('button.toggle-secondary'), function(b){
    var label = b.textContent;
    b.addEventListener('click', function(){
      var table = b.closest('section').querySelector('table.board');
      var on = table.classList.toggle('show-secondary');
      b.setAttribute('aria-pressed', on ? 'true' : 'false');
      b.textContent = on ? label.replace(/^show/, 'hide') : label;
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll('th.sortable'), function(th){
    th.addEventListener('click', function(){ sortBy(th); });
    th.addEventListener('keydown', function(e){ if(e.key === 'Enter' || e.key === ' '){ e.preventDefault(); sortBy(th); } });
  });
})();
"""


def render(model: BoardModel, res: str = "results") -> str:
    """The page; ``res``: the results folder relative to the page (record links)."""
    tabs = ['<button type="button" data-tab="overall" role="tab">Overall</button>']
    tabs += [f'<button type="button" data-tab="{_e(b.key)}" role="tab">{_e(b.task)} <small>{_e(b.model)}</small></button>'
             for b in model.boards]
    panels = [_overall_panel(model, res)]
    panels += [_board_panel(b, res) for b in model.boards]
    if model.glossary:
        tabs.append('<button type="button" data-tab="metrics" role="tab">Metrics</button>')
        panels.append(_glossary_panel(model))
    groups: dict = {}  # tab -> its page-level sections, tabs in order of first appearance
    for s in model.sections:
        if FORMAT in s.formats:
            groups.setdefault(s.tab or DEFAULT_TAB, []).append(s)
    for tab, secs in groups.items():
        lines = section_lines(secs)
        if not lines:
            continue
        tabs.append(f'<button type="button" data-tab="{_e(tab.id)}" role="tab">{_e(tab.label)}</button>')
        panels.append(f'<section class="panel" id="{_tab_id(tab.id)}" data-tab="{_e(tab.id)}" hidden>'
                      f"<h2>{_e(tab.title)}</h2>" + "\n".join(lines) + "</section>")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">', "<title>attriboard leaderboard</title>",
        f"<style>{CSS}</style>", "</head>", "<body>", "<header>", "<h1>attriboard leaderboard</h1>",
        f"<p>Feature-attribution explainers ranked per task board and overall. Scores are means over the evaluated "
        f"examples with percentile-bootstrap 95% confidence intervals (1,000 resamples); time is wall time per example, "
        f"cost the model sequences per example. Click a column header to sort, a cell to open its result record.</p>",
        f'<nav class="tabs" role="tablist">{"".join(tabs)}</nav>', "</header>", "<main>", *panels, "</main>",
        f"<footer>Generated by <code>attriboard leaderboard</code> from {model.n_records} result records in "
        "<code>results/</code>; do not edit by hand. Verify any record with <code>attriboard verify</code>.</footer>",
        f"<script>{JS}</script>", "</body>", "</html>", ""])
