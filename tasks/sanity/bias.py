"""Paper 003 sec. 4: a removal metric favours the explainer that removes words the same way.

- :data:`DELETION_BERT` (``deletion_bert_auc``): ``deletion_auc`` whose removed words are
  replaced by the masked LM's top-1 fill (removal operator ``mlm``; paper 003's
  Deletion_BERT, Kim et al.'s AUC_rep), registered here so that a task can report it beside
  ``deletion_auc`` (removal ``delete``, paper 003's Deletion).
- :func:`explainer_operator`: how an explainer removes words, from its record: the
  ``operator`` / ``replacement`` parameter when it declares one, else the built-in table
  :data:`BUILTIN_OPERATORS`; ``None`` for explainers that do not remove words (gradients,
  attention, random, ensembles).
- :func:`bias_matrix`: for one board (task, model), both rankings of every explainer and
  every pair whose order flips between the two metrics (strictly better under one, strictly
  worse under the other), each flip naming the operators the explainers and metrics share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from harness.board.plotting import get_field as _get
from harness.metrics.removal import DEFAULT_CURVE_FRACTION, register_removal_variant

DELETION = "deletion_auc"
DELETION_BERT = "deletion_bert_auc"
METRIC_OPERATORS = {DELETION: "delete", DELETION_BERT: "mlm"}
register_removal_variant(DELETION_BERT, DELETION, operator="mlm")


def deletion_metric_params(curve_fraction: float = DEFAULT_CURVE_FRACTION) -> dict[str, dict]:
    """``TaskSpec.metric_params`` entries of the two metrics of the bias matrix."""
    return {DELETION: {"operator": "delete", "curve_fraction": float(curve_fraction)},
            DELETION_BERT: {"operator": "mlm", "curve_fraction": float(curve_fraction)}}


#: How the built-in explainers remove a word (``None``: they do not remove words).
BUILTIN_OPERATORS: dict[str, str | None] = {
    "loo_empty": "delete", "loo_unk": "unk", "loo_mask": "mask", "loo_pad": "pad", "leave_one_out": "delete",
    "occlusion": "pad", "lime": "delete", "kernel_shap": "delete", "partition_shap": "delete",
    "lime_bert": "mlm", "input_marginalization": "mlm", "input_marginalization_renorm": "mlm",
}




def explainer_operator(record) -> str | None:
    params = _get(record, "submission", "params", default={}) or {}
    for key in ("operator", "replacement"):
        if isinstance(params.get(key), str):
            return params[key]
    return BUILTIN_OPERATORS.get(str(_get(record, "submission", "name", default="")))


def metric_operator(record, metric: str) -> str | None:
    score = _get(record, "scores", metric)
    op = _get(score, "params", default={}).get("operator") if score is not None else None
    return op or METRIC_OPERATORS.get(metric)


@dataclass
class Flip:
    a: str  # better under Deletion
    b: str  # better under Deletion_BERT
    a_delete: float
    b_delete: float
    a_mlm: float
    b_mlm: float
    a_operator: str | None
    b_operator: str | None
    delete_operator: str
    mlm_operator: str

    @property
    def consistent_with_bias(self) -> bool:
        """Each metric's winner removes words the way the metric does (paper 003's finding)."""
        return self.a_operator == self.delete_operator and self.b_operator == self.mlm_operator

    @property
    def favoured_side(self) -> str:
        """Which metric's winner removes words the way that metric does: ``both``, ``Deletion``,
        ``Deletion_BERT`` or ``""``."""
        d, m = self.a_operator == self.delete_operator, self.b_operator == self.mlm_operator
        return "both" if d and m else "Deletion" if d else "Deletion_BERT" if m else ""

    @property
    def shared(self) -> str:
        return self.shared_text()

    def shared_text(self, name=str, code=lambda s: f"`{s}`") -> str:
        """Which removal operators the two explainers and the two metrics share; ``name`` and
        ``code`` render a submission name and an operator (the board escapes them)."""
        parts = []
        for sub, op, metric, mop in ((self.a, self.a_operator, "Deletion", self.delete_operator),
                                     (self.b, self.b_operator, "Deletion_BERT", self.mlm_operator)):
            if op == mop:
                parts.append(f"{name(sub)} and {metric} both remove by {code(mop)}")
            else:
                parts.append(f"{name(sub)} removes by {code(op or 'none')}, {metric} by {code(mop)}")
        return "; ".join(parts)


@dataclass
class BiasMatrix:
    task: str
    model: str
    rows: list[dict] = field(default_factory=list)  # submission, operator, both scores and ranks
    flips: list[Flip] = field(default_factory=list)
    delete_operator: str = "delete"
    mlm_operator: str = "mlm"


def _ranks(values: dict[str, float]) -> dict[str, int]:
    """Rank 1 = lowest AUC (both metrics: lower is better); ties share the better rank."""
    order = sorted(values, key=lambda n: (values[n], n))
    out, prev, rank = {}, None, 0
    for i, n in enumerate(order):
        if prev is None or values[n] != prev:
            rank, prev = i + 1, values[n]
        out[n] = rank
    return out


def bias_matrix(task: str, model: str, records: Sequence[Any]) -> BiasMatrix | None:
    """The matrix of one board from its ok records, or None when fewer than two records carry
    both ``deletion_auc`` and ``deletion_bert_auc``."""
    recs = [r for r in records if _get(r, "status") == "ok"
            and _get(r, "scores", DELETION) is not None and _get(r, "scores", DELETION_BERT) is not None]
    if len(recs) < 2:
        return None
    name = {id(r): str(_get(r, "submission", "name")) for r in recs}
    d = {name[id(r)]: float(_get(r, "scores", DELETION, "value")) for r in recs}
    m = {name[id(r)]: float(_get(r, "scores", DELETION_BERT, "value")) for r in recs}
    ops = {name[id(r)]: explainer_operator(r) for r in recs}
    dop = metric_operator(recs[0], DELETION) or "delete"
    mop = metric_operator(recs[0], DELETION_BERT) or "mlm"
    rd, rm = _ranks(d), _ranks(m)
    out = BiasMatrix(task, model, delete_operator=dop, mlm_operator=mop)
    for n in sorted(d, key=lambda n: (rd[n], n)):
        out.rows.append({"submission": n, "operator": ops[n], "deletion_auc": d[n], "deletion_rank": rd[n],
                         "deletion_bert_auc": m[n], "deletion_bert_rank": rm[n], "rank_shift": rm[n] - rd[n]})
    names = sorted(d)
    for a in names:
        for b in names:
            if a != b and d[a] < d[b] and m[b] < m[a]:
                out.flips.append(Flip(a, b, d[a], d[b], m[a], m[b], ops[a], ops[b], dop, mop))
    out.flips.sort(key=lambda f: (not f.consistent_with_bias, f.a, f.b))
    return out
