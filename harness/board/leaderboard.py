"""The leaderboard, from result files alone: :func:`build` writes ``LEADERBOARD.md``,
``leaderboard.csv``, ``leaderboard.json``, the task plots and ``index.html``.

The records are loaded (:func:`load_results`), grouped and ranked
(:mod:`harness.board.boards`), turned ONCE into a :class:`~harness.board.model.BoardModel`
(:func:`~harness.board.model.build_model`, with the sections task packages register through
:mod:`harness.board.sections`), and every output is a renderer of that one model
(:mod:`~harness.board.render_md`, :mod:`~harness.board.render_html`,
:mod:`~harness.board.render_csv`).  The same result files always give byte-identical outputs.

Every string taken from a record (names, versions, metric names and parameters, error texts,
descriptions, table cells) is untrusted: it goes into Markdown through :func:`md_escape`
(or :func:`md_code`), into HTML through :func:`html.escape`, into CSV through the :mod:`csv`
module and into JSON through :func:`json.dumps` with NaN and infinity refused.  A result file
that does not load (bad JSON, schema violation, an ``ok`` record without the fields the board
shows) is skipped with a warning naming it; the board is still written.
"""

from __future__ import annotations

from pathlib import Path

from harness.board import render_csv as _csv, render_md, sections
from harness.board.boards import (AUDIT_FAMILIES, MAX_RECORD_BYTES, OVERALL_RULE, Board, build_boards,  # noqa: F401
                                  load_results, overall, ranking_boards, record_problem)
from harness.board.html import write_html
from harness.board.model import (BoardModel, attach_plots, build_model, cost_mark, cpu_ms,  # noqa: F401
                                 metric_names, model_from_boards)
from harness.board.render_csv import render_csv, render_json  # noqa: F401
from harness.board.text import md_code, md_escape, md_link_target  # noqa: F401

__all__ = ["AUDIT_FAMILIES", "MAX_RECORD_BYTES", "OVERALL_RULE", "Board", "BoardModel", "build", "build_boards",
           "build_model", "cost_mark", "cpu_ms", "load_results", "md_code", "md_escape", "md_link_target",
           "overall", "ranking_boards", "record_problem", "render_csv", "render_json", "render_markdown",
           "table_rows"]


def render_markdown(boards: list[Board], n_records: int, skipped: list[tuple[str, str]] = ()) -> str:
    """The Markdown board of grouped boards (:func:`build_boards`)."""
    return render_md.render(model_from_boards(boards, n_records, skipped))


def table_rows(boards) -> list[dict]:
    """The CSV / JSON rows of grouped boards (or of a :class:`BoardModel`)."""
    model = boards if isinstance(boards, BoardModel) else model_from_boards(boards, 0, sections=False)
    return _csv.table_rows(model)


def build(results_dir: Path, out_dir: Path, strict: bool = False) -> list[Path]:
    """Write LEADERBOARD.md, leaderboard.csv, leaderboard.json, the plots and index.html into ``out_dir``.

    A result file that is not a valid record (schema, missing fields, scores that contradict
    themselves: :func:`~harness.board.boards.record_problem`) is skipped with a one-line warning
    naming it (and named on the board); a board whose records mix models, data or settings, or
    whose reference model is close to chance, is shown with the reason and left out of the overall
    rank.  ``strict``: each of these raises ``ValueError`` instead (a task run on its default
    subset of submissions is not an error)."""
    skipped: list[tuple[str, str]] = []
    records = load_results(results_dir, skip_invalid=not strict, skipped=skipped)
    if not records:
        extra = f" ({len(skipped)} invalid file(s) skipped: {', '.join(rel for rel, _ in skipped[:10])})" if skipped else ""
        raise FileNotFoundError(f"no result records under {results_dir}{extra}; run `attriboard run` first")
    model = build_model(records, skipped)
    if strict:
        bad = [f"{b.key}: {b.not_counted}" for b in model.boards if b.not_counted and not b.not_counted.startswith("run on")]
        if bad:
            raise ValueError("--strict: board(s) not fit to count: " + "; ".join(bad))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"LEADERBOARD.md": render_md.render(model), "leaderboard.csv": render_csv(model),
             "leaderboard.json": render_json(model)}
    paths = []
    for name, text in files.items():
        p = out_dir / name
        p.write_text(text, encoding="utf-8")
        paths.append(p)
    paths += sections.write_plots([r for r, _ in records], out_dir)  # the task sections' plots
    paths.append(write_html(attach_plots(model, out_dir), out_dir, results_dir))  # the page embeds the plots
    return paths
