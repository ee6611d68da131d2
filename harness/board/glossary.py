"""The metric glossary of the page: each metric's one-line definition and the reference it
follows or equals.

Registered metrics (:mod:`harness.metrics.base`) define themselves: the first paragraph of
their class docstring, and a ``reference`` class attribute.  Metrics a task computes in its
own loop (fragility, sanity) are described by the task package with :func:`describe`, next to
its board sections.  docs/METRICS.md (and the task docs) hold the formulas and every
difference from the references.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # Sphinx roles (:func:`x`) as their plain text


@dataclass(frozen=True)
class Entry:
    definition: str
    reference: str = ""


_ENTRIES: dict[str, Entry] = {}

#: the reference a registered metric follows or equals, where its class declares none
#: (docs/METRICS.md: the formulas, the verified equalities and every difference)
REFERENCES = {
    "comprehensiveness": "ERASER comprehensiveness (DeYoung et al. 2020), AOPC over bins; per-bin drops match "
                         "ferret's aopc_compr under the same bins (differences: docs/METRICS.md)",
    "sufficiency": "ERASER sufficiency (DeYoung et al. 2020), AOPC over bins; per-bin drops match ferret's "
                   "aopc_suff under the same bins",
    "norm_comprehensiveness": "paper 004 eq. 11-12 (normalised by the null-input drop)",
    "norm_sufficiency": "paper 004 eq. 9-10",
    "deletion_auc": "Deletion curve, paper 003 sec. 3.3 (Petsiuk et al. 2018)",
    "deletion_bert_auc": "Deletion_BERT, paper 003 sec. 3.3 (removed words replaced by the masked LM's top-1 fill)",
    "insertion_auc": "Insertion curve (Petsiuk et al. 2018)",
    "gt_overlap": "Ground-Truth Overlap, paper 001 sec. 2.2.3.1",
    "mean_rank_pct": "Mean Rank %, paper 001 sec. 2.2.3.1",
    "average_precision": "equals ERASER's average_precision (sklearn average_precision_score), NOT ERASER's "
                         "auprc (trapezoidal area under the PR curve); was named auprc before e-SNLI task 1.1",
    "token_iou_best_tau": "token-level IoU at the best tau (paper 003 sec. 5.2), NOT ERASER's span-level IOU F1; "
                          "was named iou_best_tau before e-SNLI task 1.1",
    "precision_best_tau": "token-level precision at the tau of token_iou_best_tau (paper 003 sec. 5.2)",
    "recall_best_tau": "token-level recall at the tau of token_iou_best_tau (paper 003 sec. 5.2)",
    "f1_best_tau": "token-level F1 at the tau of token_iou_best_tau (paper 003 sec. 5.2)",
    "token_f1_at_k": "ERASER's token-level F1 (score_hard_rationale_predictions) of the top-|G| words",
}


def describe(metric: str, definition: str, reference: str = "") -> None:
    """Declare the glossary entry of a metric that no registered metric class defines."""
    _ENTRIES[metric] = Entry(" ".join(definition.split()), " ".join(reference.split()))


def entry(metric: str) -> Entry:
    """The glossary entry of ``metric`` (empty if nothing describes it)."""
    from harness.metrics.base import METRICS, load_all

    if metric in _ENTRIES:
        return _ENTRIES[metric]
    load_all()
    if metric in _ENTRIES:  # a task package imported by load_all described it
        return _ENTRIES[metric]
    if metric not in METRICS:
        return Entry("")
    cls = METRICS.get(metric)
    doc = (cls.__doc__ or "").strip()
    first = " ".join(doc.split("\n\n")[0].split()) if doc else ""
    first = _ROLE.sub(r"\1", first).replace("``", "")
    ref = str(getattr(cls, "reference", "") or "") or REFERENCES.get(metric, "")
    return Entry(first, " ".join(ref.split()))
