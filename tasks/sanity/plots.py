"""Per-layer randomization plots (paper 001 fig. 4.6-4.7), from result records alone.

:func:`plot_sanity` draws, per (task, model, explainer) with a ``sanity_layers`` table, one PNG
with two panels: cascading randomization (x: the original model under another seed, then the
top block, the top two blocks, ...) and independent randomization (x: the same first point,
then each block alone, top to bottom); y: mean Spearman correlation with the original map,
bars = one standard deviation over the inputs.  Deterministic: Agg backend, fixed size and
DPI, no software/time metadata in the PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from harness.board.plotting import get_field as _get, plot_file, record_table

PLOT_DIR = "sanity"


def layer_rows(record) -> list[dict]:
    return record_table(record, "sanity_layers")


def plot_path(task: str, model: str, submission: str) -> str:
    """Where :func:`plot_sanity` writes a plot, relative to the leaderboard folder."""
    return plot_file(PLOT_DIR, task, model, submission)


def plot_sanity(records: Iterable, out_dir: str | Path) -> list[Path]:
    """One PNG per (task, model, explainer) under ``out_dir/sanity/``; returns the paths, sorted."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str, str], list[dict]] = {}
    for rec in records:
        rows = layer_rows(rec)
        if rows:
            key = (str(_get(rec, "task", "name", default="task")), str(_get(rec, "model", "name", default="model")),
                   str(_get(rec, "submission", "name", default="explainer")))
            groups[key] = rows
    paths = []
    for (task, model, sub), rows in sorted(groups.items()):
        full = [r for r in rows if r["mode"] == "full"]
        with plt.rc_context({"svg.hashsalt": "attriboard", "font.size": 9}):
            fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.4), dpi=100, sharey=True, squeeze=False)
            for ax, mode, title in ((axes[0][0], "cascading", "cascading (top block down)"),
                                    (axes[0][1], "independent", "independent (one block)")):
                pts = full + sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["step"])
                xs = list(range(len(pts)))
                ys = [r["spearman_mean"] for r in pts]
                es = [r["spearman_std"] or 0.0 for r in pts]
                ax.errorbar(xs, ys, yerr=es, marker="o", color="#4c72b0", ecolor="#999999", capsize=3)
                ax.axhline(0.0, color="#333333", linewidth=0.6)
                ax.set_xticks(xs)
                ax.set_xticklabels(["full\n(other seed)" if r["mode"] == "full" else r["label"] for r in pts],
                                   rotation=20)
                ax.set_ylim(-1.05, 1.05)
                ax.set_title(title)
                ax.set_xlabel("randomized")
                ax.grid(axis="y", alpha=0.3)
            axes[0][0].set_ylabel("Spearman with the original map")
            fig.suptitle(f"{sub} on {task} ({model}): layer randomization")
            fig.tight_layout()
            path = Path(out_dir) / plot_path(task, model, sub)
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, format="png", metadata={"Software": None})
            plt.close(fig)
        paths.append(path)
    return sorted(paths)
