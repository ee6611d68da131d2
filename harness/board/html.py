"""The static HTML leaderboard page: :func:`write_html` writes ``index.html`` from a
:class:`~harness.board.model.BoardModel` (renderer: :mod:`harness.board.render_html`).
:func:`render_html` keeps the older entry point that takes grouped boards."""

from __future__ import annotations

import os
from pathlib import Path

from harness.board.model import BoardModel, model_from_boards, with_plots
from harness.board.render_html import INDEX, render


def render_html(boards, n_records: int, plots: dict[str, list[tuple[str, str, str]]] | None = None,
                res: str = "results") -> str:
    """The page of grouped boards (:func:`harness.board.boards.build_boards`); ``plots``: board
    key -> [(relative png path, kind, submission or '')] (key '': plots of no board)."""
    return render(with_plots(model_from_boards(boards, n_records), plots or {}), res)


def write_html(model: BoardModel, out_dir: Path, results_dir: Path | None = None) -> Path:
    """Write ``out_dir/index.html``.  Record links point into ``results_dir`` (default
    ``out_dir/results``), relative to the page."""
    out_dir = Path(out_dir)
    res = "results" if results_dir is None else os.path.relpath(Path(results_dir).resolve(), out_dir.resolve())
    path = out_dir / INDEX
    path.write_text(render(model, Path(res).as_posix()), encoding="utf-8")
    return path
