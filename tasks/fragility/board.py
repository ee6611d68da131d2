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


# -- glossary entries of the metrics this task computes in its own loop (docs/FRAGILITY.md) -----
from harness.board.glossary import describe  # noqa: E402

for _obj, _what in (("l2", "the L2 objective"), ("delta_lom", "the Delta-LOM objective"),
                    ("random", "random valid swaps (the control)")):
    describe(f"rank_corr_{_obj}", f"Clipped Spearman correlation between the original and the attacked map under "
             f"{_what}, mean over the perturbation buckets an input reached.", "paper 000 eq. 4")
    describe(f"top50_{_obj}", f"Share of the original top-50% words still in the attacked map's top 50% under "
             f"{_what}, mean over the buckets an input reached.", "paper 000 eq. 5")
describe("fragility_rank_corr", "Per input, the clipped Spearman correlation (max(0, rho)) between the original map "
         "and the map after the word-swap attack, under the strongest objective (L2, Delta-LOM or random); higher "
         "is more robust.", "paper 000 (ExplainFooler) eq. 4, Algorithm 1")
describe("fragility_top50", "Per input, the share of the original top-50% words that stay in the attacked map's top "
         "50%, under the strongest objective.", "paper 000 eq. 5")
del _obj, _what
