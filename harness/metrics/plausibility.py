"""Agreement of attribution maps with human highlights (T2 plausibility; paper 003 sec. 5.2).

Gold per example: the indices of the highlighted words over both segments (premise words
first), as for the ground-truth metrics of :mod:`harness.metrics.base`.  Every example needs at
least one highlighted word (tasks drop the others at load time and say how many).

- ``token_iou_best_tau``, ``precision_best_tau``, ``recall_best_tau``, ``f1_best_tau``: negative
  scores are set to 0 (human annotators only mark evidence *for* the label), the map is
  divided by its maximum (so it lies in [0, 1]; an all-zero map stays 0), and a word is
  predicted "important" when its normalised score is ``>= tau``.  With P the predicted set
  and G the gold set: IoU = |P & G| / |P | G|, precision = |P & G| / |P| (0 when P is empty),
  recall = |P & G| / |G|, F1 = 2PR / (P + R) (0 when both are 0).  ``tau`` is chosen once
  per explainer on the whole evaluation set from ``thresholds`` (default 0.05, 0.10, ...,
  0.95, paper 003) as the one maximising the mean IoU (``select_by="iou"``, default; or
  ``"f1"``); ties go to the smallest tau.  The four metrics report at that single tau (one
  binarisation per explainer, as in paper 003 table 3), recorded in ``details["tau"]``.
- ``average_precision``: ``sklearn.metrics.average_precision_score`` of the *raw* (signed)
  scores against the binary human map, per example, averaged (ERASER's ``average_precision``).
  A constant map scores |G| / n.
- ``token_f1_at_k``: the top-k words by signed score with k = |G| against G; precision and
  recall are equal, so F1 = |top-k & G| / k.  Words tied at the k-th score are taken in
  expectation over a uniformly random tie-break (a constant map scores |G| / n, the
  random-ranking level), so no explainer gains from ties.

Renamed (old records read under the new names, :mod:`harness.metrics.names`): ``auprc`` is
now ``average_precision`` (it is ERASER's ``average_precision``, not ERASER's ``auprc``, the
trapezoidal area under the PR curve) and ``iou_best_tau`` is ``token_iou_best_tau`` (token-level
IoU, not ERASER's span-level "IOU F1").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from harness.metrics.base import _gold_indices, register_metric
from harness.protocols import MetricInputs

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
_TOL = 1e-12


def gold_mask(gold, n_words: int) -> np.ndarray:
    g = _gold_indices(gold, n_words)
    mask = np.zeros(n_words, dtype=bool)
    mask[g] = True
    return mask


def normalise_positive(scores) -> np.ndarray:
    """Zero the negative scores, divide by the maximum (an all-non-positive map becomes 0)."""
    a = np.clip(np.asarray(scores, dtype=np.float64), 0.0, None)
    top = a.max() if a.size else 0.0
    return a / top if top > 0 else a


def binarise(scores, tau: float) -> np.ndarray:
    """Words whose normalised positive score is >= tau (1e-12 tolerance)."""
    return normalise_positive(scores) >= tau - _TOL


def overlap_scores(pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """IoU, precision, recall and F1 of a predicted word set against the gold set."""
    inter = float(np.sum(pred & gold))
    union = float(np.sum(pred | gold))
    n_pred, n_gold = float(pred.sum()), float(gold.sum())
    p = inter / n_pred if n_pred else 0.0
    r = inter / n_gold if n_gold else 0.0
    return {"iou": inter / union if union else 0.0, "precision": p, "recall": r,
            "f1": 2 * p * r / (p + r) if p + r else 0.0}


def scores_at_tau(word_scores: Sequence[np.ndarray], gold: Sequence, tau: float) -> dict[str, np.ndarray]:
    rows = [overlap_scores(binarise(s, tau), gold_mask(g, len(s))) for s, g in zip(word_scores, gold)]
    return {k: np.array([r[k] for r in rows]) for k in ("iou", "precision", "recall", "f1")}


def best_tau(word_scores: Sequence[np.ndarray], gold: Sequence, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
             select_by: str = "iou") -> tuple[float, dict[str, np.ndarray]]:
    """The threshold maximising the mean of ``select_by`` over the set (smallest on ties)."""
    if select_by not in ("iou", "f1"):
        raise ValueError(f"select_by must be 'iou' or 'f1', got {select_by!r}")
    best = None
    for tau in sorted(float(t) for t in thresholds):
        per = scores_at_tau(word_scores, gold, tau)
        value = float(per[select_by].mean()) if len(per[select_by]) else 0.0
        if best is None or value > best[0] + 1e-15:
            best = (value, tau, per)
    if best is None:
        raise ValueError("thresholds must not be empty")
    return best[1], best[2]


def average_precision_one(scores, gold) -> float:
    """sklearn's ``average_precision_score`` of the raw scores against the gold words (1 when
    every word is gold): ERASER's ``average_precision`` for one example."""
    from sklearn.metrics import average_precision_score

    s = np.asarray(scores, dtype=np.float64)
    y = gold_mask(gold, s.size)
    if y.all():
        return 1.0
    return float(average_precision_score(y.astype(int), s))


def token_f1_at_k_one(scores, gold) -> float:
    """Expected |top-k & G| / k with k = |G|, ties at the k-th score broken uniformly at random."""
    s = np.asarray(scores, dtype=np.float64)
    y = gold_mask(gold, s.size)
    k = int(y.sum())
    kth = np.sort(s)[::-1][k - 1]
    above = s > kth
    tied = s == kth
    slots = k - int(above.sum())
    hits = float((above & y).sum()) + slots * float((tied & y).sum()) / float(tied.sum())
    return hits / k


@dataclass
class _AtTau:
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS
    select_by: str = "iou"
    family = "plausibility"
    higher_is_better = True
    key = ""

    def __post_init__(self) -> None:
        self.thresholds = tuple(float(t) for t in self.thresholds)
        if not self.thresholds or any(not 0 <= t <= 1 for t in self.thresholds):
            raise ValueError(f"thresholds must be in [0, 1], got {list(self.thresholds)!r}")
        if self.select_by not in ("iou", "f1"):
            raise ValueError(f"select_by must be 'iou' or 'f1', got {self.select_by!r}")
        self.details: dict[str, float] = {}

    def per_example(self, inputs: MetricInputs) -> np.ndarray:
        tau, per = best_tau(inputs.word_scores, inputs.gold, self.thresholds, self.select_by)
        self.details = {"tau": tau}
        return per[self.key]


@register_metric("token_iou_best_tau")
@dataclass
class TokenIoUBestTau(_AtTau):
    """Token-level IoU with the human map after binarising at the explainer's best tau (paper 003 sec. 5.2)."""

    key = "iou"
    reference = ("token-level IoU at the best tau (paper 003 sec. 5.2); NOT ERASER's span-level IOU F1 "
                 "(was named iou_best_tau before e-SNLI task 1.1; docs/METRICS.md)")


@register_metric("precision_best_tau")
@dataclass
class PrecisionBestTau(_AtTau):
    """Precision at the explainer's best tau (the tau of ``token_iou_best_tau``)."""

    key = "precision"


@register_metric("recall_best_tau")
@dataclass
class RecallBestTau(_AtTau):
    """Recall at the explainer's best tau (the tau of ``token_iou_best_tau``)."""

    key = "recall"


@register_metric("f1_best_tau")
@dataclass
class F1BestTau(_AtTau):
    """F1 at the explainer's best tau (the tau of ``token_iou_best_tau``)."""

    key = "f1"


@register_metric("average_precision")
@dataclass
class AveragePrecision:
    """Average precision of the raw scores against the human map, per example."""

    higher_is_better = True
    family = "plausibility"
    reference = ("equals ERASER's average_precision (sklearn average_precision_score); NOT ERASER's auprc "
                 "(trapezoidal area under the PR curve); was named auprc before e-SNLI task 1.1; docs/METRICS.md")

    def per_example(self, inputs: MetricInputs) -> np.ndarray:
        return np.array([average_precision_one(s, g) for s, g in zip(inputs.word_scores, inputs.gold)])


@register_metric("token_f1_at_k")
@dataclass
class TokenF1AtK:
    """Token F1 of the top-|G| words against the human map (ties in expectation)."""

    higher_is_better = True
    family = "plausibility"

    def per_example(self, inputs: MetricInputs) -> np.ndarray:
        return np.array([token_f1_at_k_one(s, g) for s, g in zip(inputs.word_scores, inputs.gold)])


PLAUSIBILITY_METRICS = ("token_iou_best_tau", "precision_best_tau", "recall_best_tau", "f1_best_tau",
                        "average_precision", "token_f1_at_k")
