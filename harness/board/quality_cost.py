"""Quality against cost, per task board: the main score against the measured time per example
(and the model passes per example), with the Pareto front marked (a submission is on the front
when no other is at least as good on both and better on one; :func:`harness.board.ranking.pareto_front`).
A table under every board and an SVG plot (``quality_cost/<task>__<model>.svg``).  Registered
with :mod:`harness.board.sections` like a task's sections (found by :func:`sections.discover`)."""

from __future__ import annotations

import re
from pathlib import Path

from harness.board.model import Lit, Paragraph, Plot, Section, Table, code, rich, text
from harness.board.ranking import pareto_front, plot_quality_cost
from harness.board.sections import register_section

INTRO = ("Quality against cost: the main score against the measured time per example (mean; cost "
         "lower is better). On the Pareto front: no other submission is at least as good on both and "
         "better on one.")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(s)).strip("-") or "x"


def plot_path(task: str, model: str) -> str:
    return f"quality_cost/{_slug(task)}__{_slug(model)}.svg"


def points(main_metric: str, ok) -> list[tuple[str, float, float]]:
    """(submission, main score, seconds per example) of a board's scored records (best first)."""
    return [(r.submission.name, r.scores[main_metric].value, r.timing.per_example_mean_s) for r, _ in ok]


def board_section(b) -> Section | None:
    if len(b.ranked) < 2:
        return None
    pts = points(b.main_metric, [(r, rel) for _, r, rel in b.ranked])
    front = pareto_front(pts, higher_is_better=b.higher_is_better)
    passes = {r.submission.name: r.cost.forward_per_example + r.cost.backward_per_example for _, r, _ in b.ranked}
    body = tuple(((text(n, 100),), (Lit(f"{q:.4f}"),), (Lit(f"{c * 1000:.2f}"),), (Lit(f"{passes[n]:.1f}"),),
                  (Lit("yes" if n in front else ""),)) for n, q, c in pts)
    table = Table(((Lit("submission"),), rich(code(b.main_metric, 100), " ↑" if b.higher_is_better else " ↓"),
                   (Lit("ms/example"),), (Lit("passes/example"),), (Lit("Pareto front"),)),
                  body, ("---", "---:", "---:", "---:", "---"))
    return Section("quality_cost", "Quality vs cost", (Paragraph(rich(INTRO)), table), board=b.key,
                   plots=(Plot(plot_path(b.task, b.model), f"{b.main_metric} against ms/example on {b.key}",
                               kind="quality-cost"),))


def write_plots(records, out_dir: Path) -> list[Path]:
    """One plot per board with at least two scored submissions (grouped and ordered as the board
    is, without its rank tests, which the plot does not need)."""
    from harness.board.boards import group_records

    paths = []
    for g in group_records([(r, "") for r in records]):
        if len(g.ok) < 2:
            continue
        pts = points(g.main_metric, g.ok)
        path = Path(out_dir) / plot_path(g.task, g.model)
        path.parent.mkdir(parents=True, exist_ok=True)
        paths.append(plot_quality_cost(pts, pareto_front(pts, higher_is_better=g.higher_is_better), path,
                                       title=f"{g.task} on {g.model}", quality_label=g.main_metric,
                                       cost_label="seconds per example", higher_is_better=g.higher_is_better))
    return paths


@register_section(plots=write_plots, order=-1)
def sections(boards) -> list[Section]:
    return [s for s in (board_section(b) for b in boards) if s is not None]
