"""The Markdown board (``LEADERBOARD.md``), rendered from a :class:`~harness.board.model.BoardModel`.

Every record string (a :class:`~harness.board.model.Text` span) goes through
:func:`~harness.board.text.md_escape`; code spans are identifiers only; link targets are
percent-encoded relative paths."""

from __future__ import annotations

from harness.board.model import (BoardModel, BulletList, Code, Heading, Lit, Link, Paragraph, Strong, Table,
                                 TaskBoard, Text)
from harness.board.text import is_relative_link, first_url, md_code, md_escape, md_link_target

FORMAT = "markdown"


def spans(items) -> str:
    out = []
    for s in items:
        if isinstance(s, Lit):
            out.append(s.text)
        elif isinstance(s, Text):
            out.append(md_escape(s.text))
        elif isinstance(s, Code):
            out.append(f"`{s.text}`")
        elif isinstance(s, Strong):
            out.append(f"**{spans(s.spans)}**")
        elif isinstance(s, Link):
            if not is_relative_link(s.href):  # relative paths and anchors only
                out.append(spans(s.label))
                continue
            href = s.href if s.href.startswith("#") else md_link_target(s.href)
            out.append(f"[{spans(s.label)}]({href})")
        else:
            raise TypeError(f"not a span: {s!r}")
    return "".join(out)


def _row(cells) -> str:
    return "| " + " | ".join(spans(c) for c in cells) + " |"


def blocks(items) -> list[str]:
    """Structured blocks as Markdown lines."""
    L: list[str] = []
    for b in items:
        if b.gap_before:
            L.append("")
        if isinstance(b, Heading):
            L.append("#" * b.level + " " + spans(b.text))
        elif isinstance(b, Paragraph):
            L.append(spans(b.text))
        elif isinstance(b, BulletList):
            L += ["- " + spans(item) for item in b.items]
        elif isinstance(b, Table):
            L += [_row(b.header), "|" + "|".join(b.align) + "|"] + [_row(r) for r in b.rows]
        else:
            raise TypeError(f"not a block: {b!r}")
        if b.gap_after:
            L.append("")
    return L


def section_lines(sections) -> list[str]:
    L: list[str] = []
    for s in sections:
        if FORMAT not in s.formats:
            continue
        L += blocks(s.blocks)
        for p in s.plots:
            L += ["", f"![{md_escape(p.alt, 200)}]({md_link_target(p.path)})"]
    return L


def _board(b: TaskBoard) -> list[str]:
    E = md_escape
    L = ["", f"## {E(b.task, 100)} (v{E(b.task_version, 40)}) on {E(b.model, 100)}", "",
         f"Model: {E(b.model_description, 300)}, dev accuracy {b.dev_accuracy:.4f}. Main metric: "
         f"{md_code(b.main_metric, 100)} ({'higher' if b.higher_is_better else 'lower'} is better)."
         + (f" Masked LM: {E(b.mlm_description, 600)}." if b.mlm_description else "")
         + (" Diagnostic board: shown, not counted in the overall rank." if b.audit else ""), "",
         f"Examples: {', '.join(str(n) for n in b.n_examples)}; records made {_dates(b)} at harness commit "
         f"{', '.join(E(c, 40) for c in b.commits)}.", ""]
    if b.not_counted:
        L += [f"**Not counted in the overall rank:** {E(b.not_counted, 400)}.", ""]
    for f in b.flags:
        L += [f"**Warning:** {E(f, 600)}.", ""]
    L += [f"Rank groups (a range such as 2-4 is a statistical tie): {E(b.rank_test, 300)}.", ""]
    heads = ["rank", "submission", "version"]
    for c in b.columns:
        op = f" (operator {E('/'.join(c.operators), 100)})" if c.operators else ""
        heads.append(f"{E(c.metric, 100)}{op} {'↑' if c.higher_is_better else '↓'} [95% CI]")
    heads += ["ms/example p50", "ms/example p95", "CPU ms/example", "fwd/ex", "bwd/ex", "mlm/ex", "peak RSS MB",
              "truncated", "device", "record"]
    L.append("| " + " | ".join(heads) + " |")
    L.append("|" + "|".join(["---:"] + ["---"] * 2 + ["---"] * len(b.columns) + ["---:"] * 8 + ["---", "---"]) + "|")
    for r in b.rows:
        cells = [E(r.rank_group, 20), E(r.submission, 100) + _links(r.paper, r.code), E(r.version, 40)]
        cells += ["" if s is None else s.text for s in r.scores]
        mark = r.cost_mark
        cells += [f"{r.p50_s * 1000:.2f}", f"{r.p95_s * 1000:.2f}", r.cpu_ms,
                  f"{r.forward_per_example:.1f}{mark}", f"{r.backward_per_example:.1f}{mark}",
                  f"{r.mlm_per_example:.1f}{mark}", f"{r.peak_rss_mb:.0f}", f"{r.n_truncated}/{r.n_inputs}",
                  E(r.device, 60), f"[json](results/{md_link_target(r.record)})"]
        L.append("| " + " | ".join(cells) + " |")
    L += blocks(b.notes)
    L += section_lines(b.sections)
    if b.failed:
        L += ["", "Failed submissions (not ranked):", "", "| submission | stage | error |", "|---|---|---|"]
        for f in b.failed:
            L.append(f"| {E(f.submission, 100)} | {E(f.stage)} | {E(f'{f.error_type}: {f.message}', 300)} |")
    return L


def _dates(b: TaskBoard) -> str:
    if not b.dates:
        return "(no date)"
    return b.dates[0] if b.dates[0] == b.dates[-1] else f"{b.dates[0]} to {b.dates[-1]}"


def _links(paper: str | None, code: str | None) -> str:
    """`` ([paper](url), [code](url))`` for the declared links that are plain http(s) URLs."""
    urls = ((label, first_url(text)) for label, text in (("paper", paper), ("code", code)))
    out = [f"[{label}]({url})" for label, url in urls if url]
    return f" ({', '.join(out)})" if out else ""


def _glossary(model: BoardModel) -> list[str]:
    if not model.glossary:
        return []
    L = ["", "### Metrics", "", "| metric | better | definition | reference |", "|---|---|---|---|"]
    for g in model.glossary:
        L.append(f"| {md_code(g.metric, 100)} | {'higher' if g.higher_is_better else 'lower'} | "
                 f"{md_escape(g.definition, 600)} | {md_escape(g.reference, 300)} |")
    return L


def render(model: BoardModel) -> str:
    """``LEADERBOARD.md``."""
    E = md_escape
    L = ["# attriboard leaderboard", "",
         f"Built from {model.n_records} result records in `leaderboard/results/` by `attriboard leaderboard`; "
         "do not edit by hand.", "",
         "Scores are means over the evaluated examples with percentile-bootstrap 95% confidence intervals "
         "(1,000 resamples). Time is wall time per example (batch time / batch size) and CPU ms/example the "
         "user + system CPU time per example; in sandboxed runs both and peak RSS are measured by the harness "
         "from outside the worker (docs/SECURITY.md). fwd/ex and bwd/ex are classifier sequences forwarded / "
         "back-propagated per example, mlm/ex masked-LM sequences per example: marked `*` where the worker "
         "reported them itself (self-reported; `!` when they fall below the submission's declared `[passes]`).", ""]
    if model.skipped:
        L += [f"Skipped {len(model.skipped)} result file(s) that are not valid records: "
              + ", ".join(E(rel, 200) for rel, _ in model.skipped) + " (reasons in the build log).", ""]
    counted = [(i, b) for i, b in enumerate(model.boards) if b.counted]
    L += ["## Overall", "", f"Rule: {model.overall_rule}.", "",
          "Each board column: rank / ranked submissions, and the main score.", "",
          "| rank | submission | mean task rank | boards with a result | "
          + " | ".join(f"{E(b.key, 120)} ({md_code(b.main_metric, 60)}, n={'/'.join(str(n) for n in b.n_examples)})"
                       for _, b in counted) + " |",
          "|---:|---|---:|---:|" + "---:|" * len(counted)]
    for o in model.overall:
        cells = []
        for i, _ in counted:
            c = o.cells[i]
            cells.append("not run" if c is None else "failed" if c.rank is None
                         else f"{c.rank}/{c.n_ranked} ({c.value:.3f})")
        L.append(f"| {o.rank} | {E(o.submission, 100)}{_links(o.paper, o.code)} | {o.mean_rank:.2f} | "
                 f"{o.n_with_result}/{model.n_ranking_boards} | " + " | ".join(cells) + " |")
    left_out = [b for b in model.boards if not b.counted]
    if left_out:
        L += ["", "Boards shown but not counted: " + "; ".join(
            f"{E(b.key, 120)} ({'diagnostic' if b.audit else E(b.not_counted, 300)})" for b in left_out) + "."]
    L += _glossary(model)
    for b in model.boards:
        L += _board(b)
    L += section_lines(model.sections)
    return "\n".join(L) + "\n"
