"""The sanity task's part of the leaderboard (registered with :mod:`harness.board.sections`),
from result records alone.

- :func:`notes_section`: under every board that shows a removal-based metric, the removal
  operator of each such metric, the explainers on the board that remove words the same way
  (paper 003 sec. 4: the metric favours them), and the number of explainer pairs whose order
  flips between Deletion and Deletion_BERT.
- :func:`bias_section`: "Metric bias" (per board with both ``deletion_auc`` and
  ``deletion_bert_auc``: both rankings side by side and every flipped pair, with the operators
  each explainer and each metric use).
- :func:`sanity_section`: "Sanity checks" (per ``sanity`` board: the head, layer-randomization
  and initialization scores beside each explainer, the insensitivity flag, the per-layer plot,
  the masked LM's predictability and the models compared).
- :func:`write_plots`: the per-layer plots (:func:`tasks.sanity.plots.plot_sanity`).

Every string taken from a record is a :class:`~harness.board.model.Text` span (escaped by each
renderer); numbers of the wrong type render empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from harness.board.model import (BulletList, Heading, Link, Lit, Paragraph, Section, Strong, Tab, Table, code, join,
                                 rich, text)
from harness.board.sections import register_section
from tasks.sanity.bias import bias_matrix, explainer_operator

BIAS_ANCHOR = "metric-bias"
SANITY_ANCHOR = "sanity-checks"
TAB = Tab("bias-sanity", "Bias & sanity", "Metric bias and sanity checks")


def _E(x, limit: int = 100):
    return (text(x, limit),)


def _C(x, limit: int = 100):
    return (code(x, limit),)


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _f(x, nd: int = 3) -> str:
    return f"{x:.{nd}f}" if _num(x) else ""


def _records(b) -> list[Any]:
    return [r for _, r, _ in b.ranked]


def _removal_metrics(b) -> dict[str, str]:
    """metric -> operator, for the board's metrics that remove words."""
    out = {}
    for r in _records(b):
        for m, s in r.scores.items():
            op = (s.params or {}).get("operator")
            if isinstance(op, str):
                out.setdefault(m, op)
    return dict(sorted(out.items()))


def _table(header: list[str], align: list[str], rows, gap_before: bool = True) -> Table:
    return Table(tuple((Lit(h),) for h in header), tuple(tuple(r) for r in rows), tuple(align), gap_before)


def notes_blocks(b) -> tuple:
    metrics = _removal_metrics(b)
    if not metrics:
        return ()
    by_op: dict[str, list[str]] = {}
    for m, op in metrics.items():
        by_op.setdefault(op, []).append(m)
    ops = {r.submission.name: explainer_operator(r) for r in _records(b)}
    items = []
    for op, ms in sorted(by_op.items()):
        same = sorted(n for n, o in ops.items() if o == op)
        items.append(rich("removal ", _C(op), " (", join([_C(m) for m in ms], ", "),
                          "): explainers removing words the same way: ",
                          join([_E(n) for n in same], ", ") if same else "none on this board"))
    mat = bias_matrix(b.task, b.model, _records(b))
    if mat is not None:
        k = sum(f.consistent_with_bias for f in mat.flips)
        items.append(rich(Strong((Lit("bias flag"),)), ": Deletion (", _C(mat.delete_operator),
                          ") and Deletion_BERT (", _C(mat.mlm_operator), f") order {len(mat.flips)} pair(s) of "
                          f"explainers oppositely, {k} of them with each metric's winner removing words the "
                          "metric's way; see ", Link((Lit("Metric bias"),), f"#{BIAS_ANCHOR}"), "."))
    return (Paragraph(rich("Removal-operator bias (paper 003 sec. 4): a removal metric favours the explainers "
                           "that remove words the same way.")),
            BulletList(tuple(items), gap_before=False))


def notes_section(b) -> Section | None:
    blocks = notes_blocks(b)
    return Section("sanity.removal-bias-notes", "Removal-operator bias", blocks, board=b.key) if blocks else None


BIAS_INTRO = rich(
    "Paper 003 sec. 4: Deletion (", code("deletion_auc"), ", removed words deleted) favours explainers that delete "
    "words (LOO_empty), Deletion_BERT (", code("deletion_bert_auc"), ", removed words replaced by the masked LM's "
    "top-1 fill) favours those that replace them by the masked LM (IM). Both are AUCs, lower is better. A pair is "
    "flagged when one explainer is strictly better under Deletion and the other strictly better under "
    "Deletion_BERT; the \"bias\" column names the metric(s) whose winner in the pair removes words the "
    "way that metric does (\"both\": paper 003's finding).")


def _shared(f) -> tuple:
    """:attr:`Flip.shared` as spans, every record string a text span."""
    parts = []
    for sub, op, metric, mop in ((f.a, f.a_operator, "Deletion", f.delete_operator),
                                 (f.b, f.b_operator, "Deletion_BERT", f.mlm_operator)):
        if op == mop:
            parts.append(rich(_E(sub), f" and {metric} both remove by ", _C(mop)))
        else:
            parts.append(rich(_E(sub), " removes by ", _C(op or "none"), f", {metric} by ", _C(mop)))
    return join(parts, "; ")


def bias_summary(m) -> tuple:
    """One paragraph above a bias matrix: how far the two rankings agree (Kendall tau-b of the ranks),
    how many pairs flip and how many of those the operator bias explains, the largest rank changes,
    and the mean rank change of the explainers that delete words and of those that fill them in."""
    from scipy.stats import kendalltau

    n = len(m.rows)
    parts = [f"Summary: {n} submissions. "]
    if n >= 2:
        tau = kendalltau([r["deletion_rank"] for r in m.rows], [r["deletion_bert_rank"] for r in m.rows]).statistic
        parts.append(f"The two rankings agree with Kendall tau-b {tau:.2f} (1: the same order). " if tau == tau
                     else "The rankings are constant, so no correlation is defined. ")
    consistent = sum(f.consistent_with_bias for f in m.flips)
    parts.append(f"{len(m.flips)} of {n * (n - 1) // 2} pairs flip between Deletion and Deletion_BERT; {consistent} "
                 "of them the way the operator bias predicts. ")
    moved = sorted(m.rows, key=lambda r: (-abs(r["rank_shift"]), r["submission"]))[:3]
    spans: list = []
    if moved and moved[0]["rank_shift"]:
        spans.append(rich("Largest rank changes (Deletion_BERT rank minus Deletion rank): "))
        spans.append(join([rich(_E(r["submission"]), f" {r['rank_shift']:+d}") for r in moved if r["rank_shift"]], ", "))
        spans.append(rich(". "))
    by_op: dict[str, list[int]] = {}
    for r in m.rows:
        by_op.setdefault(r["operator"] or "none", []).append(r["rank_shift"])
    if len(by_op) > 1:
        spans.append(rich("Mean rank change by how an explainer removes words: "))
        spans.append(join([rich(_C(op), f" {sum(v) / len(v):+.1f} ({len(v)})") for op, v in sorted(by_op.items())], ", "))
        spans.append(rich(" (positive: worse under Deletion_BERT)."))
    return rich("".join(parts), *spans)


def bias_blocks(boards) -> tuple:
    mats = [m for m in (bias_matrix(b.task, b.model, _records(b)) for b in boards) if m is not None]
    if not mats:
        return ()
    L: list = [Heading(2, rich("Metric bias")), Paragraph(BIAS_INTRO)]
    for m in mats:
        L.append(Heading(3, rich(_E(m.task), " on ", _E(m.model))))
        L.append(Paragraph(bias_summary(m)))
        L.append(_table(["submission", "removes by", "Deletion AUC ↓", "rank", "Deletion_BERT AUC ↓", "rank",
                         "rank change (BERT - Deletion)"], ["---", "---", "---:", "---:", "---:", "---:", "---:"],
                        [(_E(r["submission"]), _E(r["operator"] or "none"), (Lit(f"{r['deletion_auc']:.4f}"),),
                          (Lit(f"{r['deletion_rank']}"),), (Lit(f"{r['deletion_bert_auc']:.4f}"),),
                          (Lit(f"{r['deletion_bert_rank']}"),), (Lit(f"{r['rank_shift']:+d}"),)) for r in m.rows]))
        L.append(Paragraph(rich(f"{len(m.flips)} flipped pair(s), {sum(f.consistent_with_bias for f in m.flips)} "
                                "consistent with the operator bias."), gap_after=True))
        if m.flips:
            L.append(_table(["better under Deletion", "better under Deletion_BERT", "Deletion AUC (a / b)",
                             "Deletion_BERT AUC (a / b)", "shared operators", "bias"], ["---"] * 6,
                            [(rich(_E(f.a), " (", _E(f.a_operator or "none"), ")"),
                              rich(_E(f.b), " (", _E(f.b_operator or "none"), ")"),
                              (Lit(f"{f.a_delete:.4f} / {f.b_delete:.4f}"),), (Lit(f"{f.a_mlm:.4f} / {f.b_mlm:.4f}"),),
                              _shared(f), rich(f.favoured_side)) for f in m.flips], gap_before=False))
    return tuple(L)


SANITY_INTRO = rich(
    "Sensitivity to the model (paper 003 sec. 5.3 / table A5; paper 001 sec. 3.3, fig. 4.6-4.7) and "
    "consistency across initialisations (paper 004 sec. 4.4, table 3); definitions in docs/SANITY.md. "
    "Head: share of words whose attribution changes sign and mean change of |attribution| (maps scaled to "
    "[-1, 1]) after re-initialising the classification layer (higher = more sensitive = better). rho: "
    "Spearman correlation with the original map; ", code("repeat"), " = same model, another explain seed (the "
    "noise ceiling); lower after randomization = more sensitive. Jaccard@25%: DIT between reference models "
    "trained with different seeds (higher = more consistent), UIT against the untrained-head model "
    "(lower = better). ", Strong((Lit("insensitive"),)), ": the map survives randomizing every block.")

SANITY_COLUMNS = ["submission", "removes by", "head sign change ↑", "head magnitude change ↑", "rho repeat",
                  "rho top block ↓", "rho all blocks ↓", "rho independent ↓", "DIT Jaccard@25% ↑",
                  "UIT Jaccard@25% ↓", "flag", "plot"]
SANITY_SCORES = ["head_sign_change", "head_magnitude_change", "rho_repeat", "rho_top_block", "rho_all_blocks",
                 "rho_independent_mean", "dit_jaccard", "uit_jaccard"]


def sanity_blocks(boards) -> tuple:
    from tasks.sanity.plots import plot_path

    sb = [b for b in boards if any(r.tables.get("sanity_summary") for r in _records(b))]
    if not sb:
        return ()
    L: list = [Heading(2, rich("Sanity checks")), Paragraph(SANITY_INTRO)]
    for b in sb:
        L.append(Heading(3, rich(_E(b.task), " on ", _E(b.model))))
        rows, first = [], None
        for r in _records(b):
            summ = (r.tables.get("sanity_summary") or [{}])[0]
            summ = summ if isinstance(summ, dict) else {}
            if not summ:
                continue
            first = first or r

            def s(m):
                sc = r.scores.get(m)
                return (Lit("" if sc is None else f"{sc.value:.3f}"),)

            flag = (Strong((Lit("insensitive"),)),) if summ.get("insensitive") else ()
            rows.append((_E(r.submission.name), _E(explainer_operator(r) or "none"), *(s(m) for m in SANITY_SCORES),
                         flag, (Link((Lit("png"),), plot_path(b.task, b.model, r.submission.name)),)))
        L.append(_table(SANITY_COLUMNS, ["---", "---"] + ["---:"] * 8 + ["---", "---"], rows))
        if first is None:
            continue
        mlm = first.tables.get("sanity_mlm") or []
        if mlm:
            L.append(Paragraph(rich(
                "Masked-LM predictability (paper 003 appendix B, table A3): each word of the task's scored "
                "inputs masked alone; share restored exactly by the top-1 fill, mean top-1 likelihood over "
                "the exact matches and over all words.")))
            rows = []
            for row in mlm:
                nw = row.get("n_words", 0)
                rows.append((_E(row.get("masked_lm", "")), (Lit(f"{int(nw) if _num(nw) else 0}"),),
                             (Lit(_f(row.get("exact_match"))),), (Lit(_f(row.get("exact_match_gold"))),),
                             (Lit(_f(row.get("top1_likelihood_exact"))),), (Lit(_f(row.get("top1_likelihood_all"))),),
                             _E(row.get("status", ""))))
            L.append(_table(["masked LM", "words", "exact match", "exact match (gold words)",
                             "top-1 likelihood (exact)", "top-1 likelihood (all)", "status"],
                            ["---", "---:", "---:", "---:", "---:", "---:", "---"], rows))
        behaviour = first.tables.get("sanity_variants") or []
        if behaviour:
            L.append(Paragraph(rich(
                "Model variants on the scored inputs (explainer-independent): share of inputs whose predicted "
                "class is still the reference's, and mean probability of that class. A randomization that "
                "leaves the prediction intact (e.g. a top block the residual stream bypasses) leaves "
                "output-based explainers (LIME, SHAP, LOO) little to react to.")))
            L.append(_table(["variant", "what is changed", "prediction agreement", "mean p(target)"],
                            ["---", "---", "---:", "---:"],
                            [(_E(row.get("variant", "")), _E(row.get("label", ""), 200),
                              (Lit(_f(row.get("prediction_agreement"))),), (Lit(_f(row.get("p_target_mean"))),))
                             for row in behaviour]))
        models = first.tables.get("sanity_models") or []
        if models:
            L.append(Paragraph(rich(
                "Models compared for DIT/UIT: ",
                join([rich(_E(m.get("model", "")), " (seed ", _E(m.get("seed", "")), ", dev accuracy ",
                           _f(m.get("dev_accuracy"), 4), ", hash ", _E(m.get("model_hash", "")), ")")
                      for m in models], "; "),
                "; untrained = the reference model with its fully connected layers on top of "
                "the encoder re-initialised.")))
    return tuple(L)


def write_plots(records: Iterable, out_dir: str | Path) -> list[Path]:
    from tasks.sanity.plots import layer_rows, plot_sanity

    records = list(records)
    if not any(layer_rows(r) for r in records):
        return []
    return plot_sanity(records, out_dir)


@register_section(plots=write_plots)
def sections(boards) -> list[Section]:
    out = [s for s in (notes_section(b) for b in boards) if s is not None]
    bias = bias_blocks(boards)
    if bias:
        out.append(Section("sanity.metric-bias", "Metric bias", bias, tab=TAB))
    sanity = sanity_blocks(boards)
    if sanity:
        out.append(Section("sanity.sanity-checks", "Sanity checks", sanity, tab=TAB))
    return out


# -- glossary entries of the metrics this task computes in its own loop (docs/SANITY.md) --------
from harness.board.glossary import describe  # noqa: E402

describe("head_sign_change", "Share of words whose attribution changes sign after the classification layer is "
         "re-initialised (mean over head seeds): an explainer that follows the model changes.",
         "paper 003 sec. 5.3, table A5 (classifier-head sanity check)")
describe("head_magnitude_change", "Mean relative change of the attributions' magnitude after the classification "
         "layer is re-initialised.", "paper 003 sec. 5.3, table A5")
describe("head_absolute_change", "Mean absolute change of the (normalised) attributions after the classification "
         "layer is re-initialised.", "paper 003 sec. 5.3")
describe("rho_repeat", "Spearman correlation of the map with itself under another explainer seed on the same "
         "model: the noise ceiling of the randomization checks.", "paper 001 sec. 2.2.3.3")
describe("rho_top_block", "Spearman correlation with the original map after re-initialising the top transformer "
         "block (cascading randomization, first step).", "paper 001 fig. 4.6-4.7 (Adebayo et al. 2018)")
describe("rho_all_blocks", "Spearman correlation with the original map after re-initialising every transformer "
         "block (cascading randomization, last step).", "paper 001 fig. 4.6-4.7 (Adebayo et al. 2018)")
describe("rho_independent_mean", "Mean Spearman correlation with the original map when each block is "
         "re-initialised alone (independent randomization).", "paper 001 fig. 4.6-4.7 (Adebayo et al. 2018)")
describe("dit_jaccard", "Jaccard@25% between the maps of reference models trained from different initialisation "
         "seeds (data-identical training).", "paper 004 table 3")
describe("uit_jaccard", "Jaccard@25% between the maps of the trained model and of the model with an untrained "
         "head.", "paper 004 table 3")
