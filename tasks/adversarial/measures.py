"""The top-k attack on explanations and its measures (paper 001 sec. 2.3, after Ghorbani et al.).

All maps are L1-normalised first (``a / sum |a|``; an all-zero map stays zero), so that the
objective's trade-off (alpha = beta = 1, paper 001 sec. 3.5) and the Top-k Sum Change mean the
same for explainers whose scores live on different scales.  ``k = max(1, floor(topk_share * n))``
(paper 001: 15% of the input's length, rounded down; at least one word here).
"""

from __future__ import annotations

import math

import numpy as np


def normalise(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    s = np.abs(a).sum()
    return a / s if s > 0 else a


def k_for(n_words: int, share: float) -> int:
    return max(1, min(n_words, int(math.floor(round(share * n_words, 9)))))


def topk(a, k: int) -> np.ndarray:
    """Indices of the ``k`` greatest signed values, greatest first (ties: the earlier word first)."""
    return np.argsort(-np.asarray(a, dtype=np.float64), kind="stable")[:k]


def topk_distance(a0, a1, k: int) -> float:
    """The top-k attack's distance D(a_x, a_x', k) = sum_{i in topk(a_x, k)} -a_x'_i (normalised maps)."""
    return float(-normalise(a1)[topk(a0, k)].sum())


def rank_change(a0, a1, k: int) -> float:
    """Share of the k top ranks whose word differs between the two maps (paper 001's worked
    example: [12, 3, 7] vs [3, 15, 7] is 0.66; its printed formula has '=' where the text and the
    example count the ranks that change)."""
    return float(np.mean(topk(a0, k) != topk(a1, k)))


def topk_sum_change(a0, a1, k: int) -> float:
    """sum_{i in topk(a_x, k)} a_x,i - a_x',i on the normalised maps: how much of the original top
    words' attribution the attack removed."""
    idx = topk(a0, k)
    return float(normalise(a0)[idx].sum() - normalise(a1)[idx].sum())


def objective(name: str, a0, a1, params: dict, p0: float | None = None, p1: float | None = None) -> float:
    """The value the search maximises: ``topk`` (unconstrained: D; the search keeps the predicted
    class), ``topk_constrained``: alpha D - beta (p0 - p1)^2 on the target-class probability."""
    k = k_for(len(np.asarray(a0)), params.get("topk_share", 0.15))
    d = topk_distance(a0, a1, k)
    if name == "topk":
        return d
    if name == "topk_constrained":
        if p0 is None or p1 is None:
            raise ValueError("the constrained top-k objective needs both probabilities")
        return params.get("alpha", 1.0) * d - params.get("beta", 1.0) * (p0 - p1) ** 2
    raise ValueError(f"unknown top-k objective {name!r}")
