"""Partition SHAP (Lundberg & Lee 2017; shap's Partition explainer: Owen values over a
hierarchy of features) over word presence, with ``shap.PartitionExplainer``.

Features are the words of the input (all segments).  A coalition keeps the present words
and deletes the others (:func:`harness.explain_utils.keep_words`); the background is every
word deleted ([CLS] [SEP], a valid input), through ``shap.maskers.Partition`` with a one-row
all-zeros background.  The hierarchy is the natural one for text (what ``shap.maskers.Text``
builds from token positions): a balanced binary tree over *contiguous* word spans, split at
the middle, and for sentence pairs first split between the two segments.  shap's defaults
otherwise: ``max_evals=500``, ``fixed_context=None`` (the full Owen recursion), identity link.

Batched predict: shap expands its partition tree in rounds, taking up to ``batch_size`` / 2
nodes from its priority queue (largest effect first) and asking the model function for their
``batch_size`` masks at once; each call evaluates all of a round's distinct coalitions in one
batched no-grad classifier call (sorted by length).  ``batch_size=100`` (shap's default for a
tabular masker is 10): ten times fewer, larger model calls per example; the expansion order
differs from batch_size=10 only when the ``max_evals`` budget runs out before the tree is fully
expanded (inputs of more than about 16 words); below that both give the exact Owen values.
A one-word input gets its exact Shapley value f(x) - f(empty) directly.

Determinism: shap breaks ties in its expansion queue with numpy's *global* RNG
(``np.random.randn``).  Each example is explained right after ``np.random.seed(example_seed(
batch, i))`` and the caller's global RNG state is restored afterwards, so results are
reproducible and independent of batch composition.  Not thread-safe (global RNG).
"""

from __future__ import annotations

import logging

import numpy as np
import shap

from harness.explain_utils import example_seed
from harness.explainers.common import coalition_proba_fn
from harness.protocols import Attributions, ExplainBatch


def span_tree(sizes: list[int]) -> np.ndarray:
    """scipy-style linkage (n-1, 4) of a balanced binary tree over contiguous word spans.

    ``sizes``: words per segment; segments are first built separately and joined last."""
    n = sum(sizes)
    rows: list[list[float]] = []

    def build(lo: int, hi: int) -> int:  # node id covering words [lo, hi)
        if hi - lo == 1:
            return lo
        mid = (lo + hi + 1) // 2
        left, right = build(lo, mid), build(mid, hi)
        rows.append([left, right, float(hi - lo), float(hi - lo)])
        return n + len(rows) - 1

    roots, start = [], 0
    for s in sizes:
        if s:
            roots.append(build(start, start + s))
        start += s
    while len(roots) > 1:  # join the segments (left to right)
        a, b = roots.pop(0), roots.pop(0)
        rows.append([a, b, float(n), float(n)])
        roots.insert(0, n + len(rows) - 1)
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


class PartitionShap:
    name = "partition_shap"
    version = "1.0.0"

    def __init__(self, max_evals: int = 500, batch_size: int = 100) -> None:
        if max_evals < 4:
            raise ValueError(f"max_evals must be >= 4, got {max_evals}")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {batch_size}")
        self.max_evals = int(max_evals)
        self.batch_size = int(batch_size)

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        targets = batch.targets.cpu().numpy()
        scores = []
        shap_log = logging.getLogger("shap")
        for i in range(len(batch)):
            n = batch.n_words(i)
            segs = batch.segments[i]
            t = int(targets[i])
            if n == 0:
                scores.append(np.zeros(0))
                continue
            f = coalition_proba_fn(model, segs, t)
            if n == 1:
                v = f(np.array([[1.0], [0.0]]))
                scores.append(np.array([v[0] - v[1]]))
                continue
            state = np.random.get_state()
            level = shap_log.level
            try:
                np.random.seed(example_seed(batch, i))
                shap_log.setLevel(max(level, logging.WARNING))
                masker = shap.maskers.Partition(np.zeros((1, n)), clustering=span_tree([len(s) for s in segs]))
                explainer = shap.PartitionExplainer(f, masker)
                exp = explainer(np.ones((1, n)), max_evals=self.max_evals, batch_size=self.batch_size, silent=True)
            finally:
                shap_log.setLevel(level)
                np.random.set_state(state)
            scores.append(np.asarray(exp.values, dtype=np.float64).reshape(n))
        return Attributions(level="word", scores=scores)
