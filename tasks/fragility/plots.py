"""Violin plots of the per-input rank correlation per perturbation bucket (paper 000 fig. 7-10).

:func:`plot_fragility` works from result records alone (``ResultRecord`` objects or their
JSON dicts) with a ``tables["fragility_per_input"]`` table: one PNG per (task, model,
explainer), one panel per objective, one violin per bucket.  Output is deterministic: Agg
backend, fixed size and DPI, inputs sorted, no software/time metadata in the PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from harness.board.plotting import get_field as _get, plot_file, record_table

from tasks.fragility.metrics import BUCKETS

OBJECTIVE_LABELS = {"l2": "L2 objective", "delta_lom": "Delta-LOM objective", "random": "random selection"}
PLOT_DIR = "fragility"


def fragility_rows(record) -> list[dict]:
    """The per-input rows of a record (empty when it has none or failed)."""
    return record_table(record, "fragility_per_input")


def plot_path(task: str, model: str, submission: str) -> str:
    """Where :func:`plot_fragility` writes a plot, relative to the leaderboard folder."""
    return plot_file(PLOT_DIR, task, model, submission)


def plot_fragility(records: Iterable, out_dir: str | Path) -> list[Path]:
    """Write one violin-plot PNG per (task, model, explainer) under ``out_dir/fragility/``;
    returns the paths, sorted.  Records without fragility tables are ignored."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str, str], list[dict]] = {}
    for rec in records:
        rows = fragility_rows(rec)
        if not rows:
            continue
        key = (str(_get(rec, "task", "name", default="task")), str(_get(rec, "model", "name", default="model")),
               str(_get(rec, "submission", "name", default="explainer")))
        groups.setdefault(key, []).extend(rows)
    out = Path(out_dir) / PLOT_DIR
    paths = []
    for (task, model, sub), rows in sorted(groups.items()):
        objectives = [o for o in OBJECTIVE_LABELS if any(r["objective"] == o for r in rows)]
        objectives += sorted({r["objective"] for r in rows} - set(objectives))
        with plt.rc_context({"svg.hashsalt": "attriboard", "font.size": 9}):
            fig, axes = plt.subplots(1, len(objectives), figsize=(3.6 * len(objectives), 3.4), dpi=100,
                                     sharey=True, squeeze=False)
            for ax, obj in zip(axes[0], objectives):
                data = []
                for b in BUCKETS:
                    vals = sorted(float(r["spearman_clipped"]) for r in rows
                                  if r["objective"] == obj and r["bucket"] == b)
                    data.append(vals)
                pos = list(range(1, len(BUCKETS) + 1))
                violin_pos = [p for p, v in zip(pos, data) if len(set(v)) >= 2]
                if violin_pos:
                    parts = ax.violinplot([data[p - 1] for p in violin_pos], positions=violin_pos, widths=0.8,
                                          showmeans=False, showextrema=False)
                    for body in parts["bodies"]:
                        body.set_facecolor("#4c72b0")
                        body.set_alpha(0.45)
                for p, v in zip(pos, data):
                    if v:
                        ax.scatter([p] * len(v), v, s=6, color="#333333", alpha=0.5, zorder=2)
                        ax.scatter([p], [sum(v) / len(v)], s=40, marker="_", color="#c44e52", zorder=3,
                                   linewidths=2)
                    ax.text(p, -0.08, f"n={len(v)}", ha="center", va="top", fontsize=7)
                ax.set_xticks(pos)
                ax.set_xticklabels(BUCKETS, rotation=30)
                ax.set_ylim(-0.15, 1.05)
                ax.set_title(OBJECTIVE_LABELS.get(obj, obj))
                ax.set_xlabel("share of words changed")
                ax.grid(axis="y", alpha=0.3)
            axes[0][0].set_ylabel("rank correlation (clipped Spearman)")
            fig.suptitle(f"{sub} on {task} ({model}): per-input rank correlation per bucket")
            fig.tight_layout()
            out.mkdir(parents=True, exist_ok=True)
            path = Path(out_dir) / plot_path(task, model, sub)
            fig.savefig(path, format="png", metadata={"Software": None})
            plt.close(fig)
        paths.append(path)
    return sorted(paths)
