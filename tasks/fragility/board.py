"""The fragility task's part of the leaderboard (registered with :mod:`harness.board.sections`):
under every board whose records carry ``tables["fragility_buckets"]``, the per-bucket table
(strongest objective and random selection) linking each explainer's violin plot, and the
violin plots themselves (:func:`tasks.fragility.plots.plot_fragility`)."""

from __future__ import annotations

from pathlib import Path

from harness.board.model import Link, Lit, Paragraph, Section, Table, rich, text
from harness.board.sections import register_section
from tasks.fragility.metrics import BUCKETS
from tasks.fragility.plots import plot_fragility, plot_path

INTRO = ("Fragility per perturbation-ratio bucket: mean clipped Spearman correlation between the original "
         "and perturbed word maps (inputs in the bucket), under the strongest objective and under random "
         "selection. Plots: violin plots of the per-input correlation per bucket.")


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def bucket_section(b) -> Section | None:
    """The per-bucket table of one board (None when no record on it has one)."""
    rows = [(r, r.tables) for _, r, _ in b.ranked if r.tables.get("fragility_buckets")]
    if not rows:
        return None
    body = []
    for r, tables in rows:
        summary = (tables.get("fragility_summary") or [{}])[0]
        strongest = str(summary.get("strongest_objective", ""))
        for obj in dict.fromkeys([strongest, "random"]):
            cells = []
            for bucket in BUCKETS:
                row = next((x for x in tables["fragility_buckets"]
                            if x.get("objective") == obj and x.get("bucket") == bucket), None)
                v = None if row is None else row.get("spearman_clipped_mean")
                n = None if row is None else row.get("n_inputs")
                ok = _is_num(v) and (n is None or _is_num(n))
                cells.append((Lit(f"{v:.3f} (n={n:g})" if ok and n is not None else f"{v:.3f}" if ok else ""),))
            body.append(((text(r.submission.name, 100),),
                         rich(text(obj, 60), " (strongest)" if obj == strongest else ""),
                         *cells, (Link((Lit("png"),), plot_path(b.task, b.model, r.submission.name)),)))
    table = Table(((Lit("submission"),), (Lit("objective"),)) + tuple((Lit(x),) for x in BUCKETS) + ((Lit("plot"),),),
                  tuple(body), ("---",) * (len(BUCKETS) + 3))
    # the HTML page shows the same numbers in its generic task tables (tables.fragility_buckets)
    return Section("fragility.buckets", "Fragility per perturbation-ratio bucket", (Paragraph(rich(INTRO)), table),
                   board=b.key, formats=frozenset({"markdown"}))


def write_plots(records, out_dir: Path) -> list[Path]:
    records = list(records)
    if not any(r.tables.get("fragility_per_input") for r in records):
        return []
    return plot_fragility(records, out_dir)


@register_section(plots=write_plots)
def sections(boards) -> list[Section]:
    return [s for s in (bucket_section(b) for b in boards) if s is not None]
