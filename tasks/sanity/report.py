"""Leaderboard sections of T5, from result records alone (called by :mod:`harness.board.leaderboard`).

- :func:`board_notes`: under every board that shows a removal-based metric, the removal
  operator of each such metric, the explainers on the board that remove words the same way
  (paper 003 sec. 4: the metric favours them), and the number of explainer pairs whose order
  flips between Deletion and Deletion_BERT.
- :func:`render_sections`: "Metric bias" (per board with both ``deletion_auc`` and
  ``deletion_bert_auc``: both rankings side by side and every flipped pair, with the operators
  each explainer and each metric use) and "Sanity checks" (per ``sanity`` board: the head,
  layer-randomization and initialization scores beside each explainer, the insensitivity flag,
  the per-layer plot, the masked LM's predictability and the models compared).
- :func:`write_plots`: the per-layer plots (:mod:`tasks.sanity.plots`).

Every string taken from a record (names, operators, table cells) goes through
:func:`harness.board.leaderboard.md_escape` / ``md_code``; numbers of the wrong type render empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from tasks.sanity.bias import DELETION, DELETION_BERT, bias_matrix, explainer_operator

BIAS_ANCHOR = "metric-bias"
SANITY_ANCHOR = "sanity-checks"


def _E(x, limit: int = 100) -> str:
    from harness.board.leaderboard import md_escape

    return md_escape(x, limit)


def _C(x, limit: int = 100) -> str:
    from harness.board.leaderboard import md_code

    return md_code(x, limit)


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


def board_notes(b) -> list[str]:
    metrics = _removal_metrics(b)
    if not metrics:
        return []
    by_op: dict[str, list[str]] = {}
    for m, op in metrics.items():
        by_op.setdefault(op, []).append(m)
    ops = {r.submission.name: explainer_operator(r) for r in _records(b)}
    L = ["", "Removal-operator bias (paper 003 sec. 4): a removal metric favours the explainers that remove "
             "words the same way."]
    for op, ms in sorted(by_op.items()):
        same = sorted(n for n, o in ops.items() if o == op)
        L.append(f"- removal {_C(op)} ({', '.join(_C(m) for m in ms)}): explainers removing words the same way: "
                 + (", ".join(_E(n) for n in same) if same else "none on this board"))
    mat = bias_matrix(b.task, b.model, _records(b))
    if mat is not None:
        k = sum(f.consistent_with_bias for f in mat.flips)
        L.append(f"- **bias flag**: Deletion ({_C(mat.delete_operator)}) and Deletion_BERT ({_C(mat.mlm_operator)}) order "
                 f"{len(mat.flips)} pair(s) of explainers oppositely, {k} of them with each metric's winner removing "
                 f"words the metric's way; see [Metric bias](#{BIAS_ANCHOR}).")
    return L


def _bias_section(boards) -> list[str]:
    mats = [m for m in (bias_matrix(b.task, b.model, _records(b)) for b in boards) if m is not None]
    if not mats:
        return []
    L = ["", "## Metric bias", "",
         "Paper 003 sec. 4: Deletion (`deletion_auc`, removed words deleted) favours explainers that delete words "
         "(LOO_empty), Deletion_BERT (`deletion_bert_auc`, removed words replaced by the masked LM's top-1 fill) "
         "favours those that replace them by the masked LM (IM). Both are AUCs, lower is better. A pair is "
         "flagged when one explainer is strictly better under Deletion and the other strictly better under "
         "Deletion_BERT; the \"bias\" column names the metric(s) whose winner in the pair removes words the "
         "way that metric does (\"both\": paper 003's finding)."]
    for m in mats:
        L += ["", f"### {_E(m.task)} on {_E(m.model)}", "",
              "| submission | removes by | Deletion AUC ↓ | rank | Deletion_BERT AUC ↓ | rank | rank change (BERT - Deletion) |",
              "|---|---|---:|---:|---:|---:|---:|"]
        for r in m.rows:
            L.append(f"| {_E(r['submission'])} | {_E(r['operator'] or 'none')} | {r['deletion_auc']:.4f} | "
                     f"{r['deletion_rank']} | {r['deletion_bert_auc']:.4f} | {r['deletion_bert_rank']} | "
                     f"{r['rank_shift']:+d} |")
        L += ["", f"{len(m.flips)} flipped pair(s), {sum(f.consistent_with_bias for f in m.flips)} consistent with "
                  "the operator bias.", ""]
        if m.flips:
            L += ["| better under Deletion | better under Deletion_BERT | Deletion AUC (a / b) | "
                  "Deletion_BERT AUC (a / b) | shared operators | bias |", "|---|---|---|---|---|---|"]
            for f in m.flips:
                L.append(f"| {_E(f.a)} ({_E(f.a_operator or 'none')}) | {_E(f.b)} ({_E(f.b_operator or 'none')}) | "
                         f"{f.a_delete:.4f} / {f.b_delete:.4f} | {f.a_mlm:.4f} / {f.b_mlm:.4f} | {_shared(f)} | "
                         f"{f.favoured_side} |")
    return L


def _shared(f) -> str:
    """:attr:`Flip.shared` with every record string escaped."""
    return f.shared_text(_E, _C)


def _sanity_section(boards) -> list[str]:
    from tasks.sanity.plots import plot_path

    sb = [b for b in boards if any(r.tables.get("sanity_summary") for r in _records(b))]
    if not sb:
        return []
    L = ["", "## Sanity checks", "",
         "Sensitivity to the model (paper 003 sec. 5.3 / table A5; paper 001 sec. 3.3, fig. 4.6-4.7) and "
         "consistency across initialisations (paper 004 sec. 4.4, table 3); definitions in docs/SANITY.md. "
         "Head: share of words whose attribution changes sign and mean change of |attribution| (maps scaled to "
         "[-1, 1]) after re-initialising the classification layer (higher = more sensitive = better). rho: "
         "Spearman correlation with the original map; `repeat` = same model, another explain seed (the noise "
         "ceiling); lower after randomization = more sensitive. Jaccard@25%: DIT between reference models "
         "trained with different seeds (higher = more consistent), UIT against the untrained-head model "
         "(lower = better). **insensitive**: the map survives randomizing every block."]
    for b in sb:
        L += ["", f"### {_E(b.task)} on {_E(b.model)}", "",
              "| submission | removes by | head sign change ↑ | head magnitude change ↑ | rho repeat | "
              "rho top block ↓ | rho all blocks ↓ | rho independent ↓ | DIT Jaccard@25% ↑ | UIT Jaccard@25% ↓ | "
              "flag | plot |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        first = None
        for r in _records(b):
            summ = (r.tables.get("sanity_summary") or [{}])[0]
            summ = summ if isinstance(summ, dict) else {}
            if not summ:
                continue
            first = first or r

            def s(m):
                sc = r.scores.get(m)
                return "" if sc is None else f"{sc.value:.3f}"

            flag = "**insensitive**" if summ.get("insensitive") else ""
            L.append(f"| {_E(r.submission.name)} | {_E(explainer_operator(r) or 'none')} | {s('head_sign_change')} | "
                     f"{s('head_magnitude_change')} | {s('rho_repeat')} | {s('rho_top_block')} | "
                     f"{s('rho_all_blocks')} | {s('rho_independent_mean')} | {s('dit_jaccard')} | "
                     f"{s('uit_jaccard')} | {flag} | [png]({plot_path(b.task, b.model, r.submission.name)}) |")
        if first is None:
            continue
        mlm = first.tables.get("sanity_mlm") or []
        if mlm:
            L += ["", "Masked-LM predictability (paper 003 appendix B, table A3): each word of the task's scored "
                      "inputs masked alone; share restored exactly by the top-1 fill, mean top-1 likelihood over "
                      "the exact matches and over all words.", "",
                  "| masked LM | words | exact match | exact match (gold words) | top-1 likelihood (exact) | "
                  "top-1 likelihood (all) | status |", "|---|---:|---:|---:|---:|---:|---|"]
            for row in mlm:
                nw = row.get("n_words", 0)
                L.append(f"| {_E(row.get('masked_lm', ''))} | {int(nw) if _num(nw) else 0} | "
                         f"{_f(row.get('exact_match'))} | {_f(row.get('exact_match_gold'))} | "
                         f"{_f(row.get('top1_likelihood_exact'))} | {_f(row.get('top1_likelihood_all'))} | "
                         f"{_E(row.get('status', ''))} |")
        behaviour = first.tables.get("sanity_variants") or []
        if behaviour:
            L += ["", "Model variants on the scored inputs (explainer-independent): share of inputs whose predicted "
                      "class is still the reference's, and mean probability of that class. A randomization that "
                      "leaves the prediction intact (e.g. a top block the residual stream bypasses) leaves "
                      "output-based explainers (LIME, SHAP, LOO) little to react to.", "",
                  "| variant | what is changed | prediction agreement | mean p(target) |", "|---|---|---:|---:|"]
            for row in behaviour:
                L.append(f"| {_E(row.get('variant', ''))} | {_E(row.get('label', ''), 200)} | {_f(row.get('prediction_agreement'))} | "
                         f"{_f(row.get('p_target_mean'))} |")
        models = first.tables.get("sanity_models") or []
        if models:
            L += ["", "Models compared for DIT/UIT: " + "; ".join(
                f"{_E(m.get('model', ''))} (seed {_E(m.get('seed', ''))}, dev accuracy {_f(m.get('dev_accuracy'), 4)}, "
                f"hash {_E(m.get('model_hash', ''))})"
                for m in models) + "; untrained = the reference model with its fully connected layers on top of "
                "the encoder re-initialised."]
    return L


def render_sections(boards) -> list[str]:
    """The "Metric bias" and "Sanity checks" sections (empty when no record carries them)."""
    return _bias_section(boards) + _sanity_section(boards)


def write_plots(records: Iterable, out_dir: str | Path) -> list[Path]:
    from tasks.sanity.plots import layer_rows, plot_sanity

    records = list(records)
    if not any(layer_rows(r) for r in records):
        return []
    return plot_sanity(records, out_dir)
