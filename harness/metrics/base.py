"""Metric registry and the ground-truth metrics shared by tasks with known important words.

Gold for these metrics is, per example, the set of indices of the ground-truth words
(the planted word in T1; the highlighted words in T2).  Words are ranked by their
*signed* score, greatest first (paper 001 sec. 2.2.3.1).  Ties are resolved against the
explainer: a constant map never earns a hit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.protocols import Metric, MetricInputs
from harness.core.registry import Registry

METRICS: Registry[type] = Registry("metric")


def register_metric(name: str):
    def wrap(cls):
        cls.name = name
        METRICS.register(name, cls)
        return cls

    return wrap


def load_all() -> None:
    """Import every metric module (this package's, and each task package's, whose modules
    register the task's own metrics), so that every metric name is registered.  Discovery by
    package membership: adding a metric touches its module (and the task that uses it)."""
    import importlib
    import pkgutil

    import harness.metrics
    import tasks

    for m in pkgutil.iter_modules(harness.metrics.__path__):
        importlib.import_module(f"harness.metrics.{m.name}")
    tasks.load_all()


def get_metric(name: str, **params) -> Metric:
    """The registered metric ``name`` built with ``params``; an old name of a renamed metric
    (:data:`harness.metrics.names.RENAMED_METRICS`) gives the metric under its current name."""
    from harness.metrics.names import current_name

    name = current_name(name)
    if name not in METRICS:
        load_all()
    return METRICS.get(name)(**params)


def _gold_indices(gold, n_words: int) -> np.ndarray:
    g = np.asarray(sorted(set(int(i) for i in gold)), dtype=np.int64)
    if g.size == 0:
        raise ValueError("ground-truth metric needs at least one gold word per example")
    if g.min() < 0 or g.max() >= n_words:
        raise ValueError(f"gold word index out of range 0..{n_words - 1}: {g.tolist()}")
    return g


def gt_overlap_one(scores: np.ndarray, gold) -> float:
    """1 if the top-|G| words by score are exactly the gold set G, else 0 (ties count against)."""
    s = np.asarray(scores, dtype=np.float64)
    g = _gold_indices(gold, s.size)
    others = np.setdiff1d(np.arange(s.size), g)
    if others.size == 0:
        return 1.0
    return float(s[g].min() > s[others].max())


def mean_rank_pct_one(scores: np.ndarray, gold) -> float:
    """min r / n such that G is inside the top-r words; ties with the gold count as ranked above."""
    s = np.asarray(scores, dtype=np.float64)
    g = _gold_indices(gold, s.size)
    r = int((s >= s[g].min()).sum())
    return r / s.size


@register_metric("gt_overlap")
@dataclass
class GroundTruthOverlap:
    """Ground-Truth Overlap (paper 001 sec. 2.2.3.1): share of examples whose top-|G| words are G."""

    higher_is_better = True
    family = "ground-truth"

    def per_example(self, inputs: MetricInputs) -> np.ndarray:
        return np.array([gt_overlap_one(s, g) for s, g in zip(inputs.word_scores, inputs.gold)])


@register_metric("mean_rank_pct")
@dataclass
class MeanRankPercentage:
    """Mean Rank % (paper 001 sec. 2.2.3.1): share of the ranking needed to recover all gold words."""

    higher_is_better = False
    family = "ground-truth"

    def per_example(self, inputs: MetricInputs) -> np.ndarray:
        return np.array([mean_rank_pct_one(s, g) for s, g in zip(inputs.word_scores, inputs.gold)])

