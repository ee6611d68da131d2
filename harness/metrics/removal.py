"""Removal (erasure) metrics, one engine shared by every task.

Words are taken out of the input in the order the attribution map gives and the model's
probability of the *target class* (its prediction on the full input) is watched.  Exact
definitions (``p(.)`` = target-class probability, ``n`` = number of words over both
segments, ``K`` = the AOPC bins, default {1, 5, 10, 20, 50}%):

- **order**: words sorted by signed score, greatest first; ties keep input order (the
  earlier word first; premise words come before hypothesis words).
- **top-k% of n words**: ``c(k, n) = min(n, max(1, ceil(k * n)))`` (at least one word).
- ``comprehensiveness`` (paper 001 def. 2.2, higher is better):
  ``mean_k [ p(x) - p(x without its top c(k, n) words) ]``.
- ``sufficiency`` (paper 001 def. 2.1, lower is better):
  ``mean_k [ p(x) - p(only the top c(k, n) words of x) ]``.
- ``norm_sufficiency`` (paper 004 eq. 9-10, higher is better): per bin
  ``S(r) = 1 - max(0, p(x) - p(r))``, normalised against the *empty* input
  (every word removed, ``S(0) = 1 - max(0, p(x) - p(empty))``) as
  ``(S(r) - S(0)) / (1 - S(0))``, clipped to [0, 1], then averaged over the bins.
- ``norm_comprehensiveness`` (paper 004 eq. 11-12, higher is better): per bin
  ``C(r) = max(0, p(x) - p(x without r))``, divided by ``1 - S(0)``, clipped to [0, 1], averaged.
  When ``1 - S(0) <= 1e-6`` (the empty input keeps the target probability, so no
  rationale can beat removing everything) both normalised scores are 0 for that example;
  the share of such examples is reported in ``details["share_degenerate"]``.  It depends only
  on the model and the input, never on the explainer.
- ``deletion_auc`` (paper 003 sec. 3.3, lower is better): remove the top word, then the top
  two, ... up to ``m = c(curve_fraction, n)`` words (default 20%); the curve is
  ``p(x), p(x without top 1), ..., p(x without top m)`` on the x-axis ``0, 1/m, ..., 1``;
  the score is its trapezoidal area (in [0, 1]; the mean height of the curve).
- ``insertion_auc`` (the mirror image, higher is better): start from the empty input and
  put the top words back one at a time up to ``m`` words:
  ``p(empty), p(only top 1), ..., p(only top m)``, same x-axis and area.

Removal uses a :mod:`harness.models.removal` operator (``delete`` by default, ``mask``, ``unk``,
``pad``, ``zero``, ``mlm``), a metric parameter recorded with every score.  The "empty"
input is every word removed by that operator (for ``delete``: ``[CLS] [SEP] [SEP]``).

Speed: :func:`removal_curves` builds every perturbed variant a metric needs (full input,
empty input, top-j removed and top-j kept for every j of the bins and of the Deletion /
Insertion steps), for *all* examples, and sends them through the model in one
:func:`harness.models.removal.removed_proba` call (large batches, ordered by length).  Curves are
cached per (model, operator, inputs, maps, targets): the first metric of a run computes them,
the others reuse them (a metric with other bins or another curve fraction evaluates only the
missing variants, again in one call).
"""

from __future__ import annotations

import functools
import hashlib
import math
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from harness.metrics.base import register_metric
from harness.protocols import MetricInputs, Segments
from harness.models.removal import check_operator, composable, kept_outputs_grouped, proba_forward, removed_proba

DEFAULT_BINS: tuple[float, ...] = (0.01, 0.05, 0.10, 0.20, 0.50)
"""AOPC bins of paper 004 sec. 3.5 (and TASKS.md T3)."""
DEFAULT_CURVE_FRACTION = 0.20
"""Deletion / Insertion stop once this share of the words is removed / inserted (paper 003)."""
DEGENERATE_EPS = 1e-6


def n_words_for(fraction: float, n: int) -> int:
    """Words in the top ``fraction`` of ``n``: ``ceil(fraction * n)``, at least 1, at most n.

    The product is rounded to 9 decimals first so that e.g. 0.1 * 30 counts 3, not 4.
    """
    if n <= 0:
        return 0
    return min(n, max(1, math.ceil(round(fraction * n, 9))))


def attribution_order(scores) -> np.ndarray:
    """Word indices by signed score, greatest first; ties keep input order (stable)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


@dataclass
class RemovalCurves:
    """Target-class probabilities of one example under top-j removal / keeping."""

    target: int
    n_words: int
    order: np.ndarray
    removed: dict[int, float] = field(default_factory=dict)
    """j -> p(x without its top-j words); j = 0 is the full input."""
    kept: dict[int, float] = field(default_factory=dict)
    """j -> p(only the top-j words of x); j = 0 is the empty input."""

    @property
    def p_full(self) -> float:
        return self.removed[0]

    @property
    def p_empty(self) -> float:
        return self.kept[0]


def _check_bins(bins) -> tuple[float, ...]:
    out = tuple(float(b) for b in bins)
    if not out or any(not 0 < b <= 1 for b in out):
        raise ValueError(f"bins must be fractions in (0, 1], got {list(bins)!r}")
    return out


def _check_fraction(fraction) -> float:
    f = float(fraction)
    if not 0 < f <= 1:
        raise ValueError(f"curve_fraction must be in (0, 1], got {fraction!r}")
    return f


def visible_segments(bundle, segments: Segments, n_scores: int) -> Segments:
    """The words the explainer saw: the example itself, or its truncation (harness policy)."""
    if sum(len(s) for s in segments) == n_scores:
        return segments
    from harness.models.encoding import fit_segments

    fitted, _ = fit_segments(bundle.tokenizer, segments, bundle.max_length)
    if sum(len(s) for s in fitted) != n_scores:
        raise ValueError(f"attribution map has {n_scores} scores but the input has "
                         f"{sum(len(s) for s in segments)} words ({sum(len(s) for s in fitted)} after truncation)")
    return fitted


def _digest(segments, maps, targets) -> str:
    h = hashlib.sha256()
    for s, m in zip(segments, maps):
        h.update(repr(s).encode())
        h.update(np.ascontiguousarray(m, dtype=np.float64).tobytes())
    h.update(repr(list(targets)).encode())
    return h.hexdigest()


_CACHE: "OrderedDict[tuple, tuple[weakref.ref, list[RemovalCurves]]]" = OrderedDict()
_CACHE_SIZE = 4


def clear_cache() -> None:
    _CACHE.clear()


TOKEN_BUDGET = 16384
"""Tokens per forward chunk that :func:`auto_batch_size` aims at (short inputs, larger chunks)."""


def auto_batch_size(bundle, max_words: int) -> int:
    """Chunk size for the variants: ``TOKEN_BUDGET / (words + 3)`` sequences, between the bundle's
    ``predict_batch_size`` and four times it (short NLI pairs: ~600 per chunk)."""
    base = int(getattr(bundle, "predict_batch_size", 256) or 256)
    return int(min(4 * base, max(base, TOKEN_BUDGET // (max_words + 3))))


def _needed_counts(n: int, bins: Sequence[float], curve_fraction: float) -> set[int]:
    return {0} | {n_words_for(k, n) for k in bins} | set(range(1, n_words_for(curve_fraction, n) + 1))


@functools.lru_cache(maxsize=1024)
def _variants(n: int, bins: tuple[float, ...], curve_fraction: float):
    """The variants an n-word example needs: ``[(kind, j)]`` sorted, with their j's and
    "removed" flags as arrays (read-only: shared between calls)."""
    wanted = set()
    for j in _needed_counts(n, bins, curve_fraction):
        # canonical forms: removing all n words = keeping none, keeping all n = removing none
        wanted.add(("removed", j) if j < n else ("kept", 0))
        wanted.add(("kept", j) if j < n else ("removed", 0))
    new = sorted(wanted)
    js = np.asarray([j for _, j in new], dtype=np.int64)
    removed = np.asarray([kind == "removed" for kind, _ in new], dtype=bool)
    js.flags.writeable = False
    removed.flags.writeable = False
    return new, js, removed


def removal_curves(inputs: MetricInputs, operator: str = "delete", bins: Sequence[float] = DEFAULT_BINS,
                   curve_fraction: float = DEFAULT_CURVE_FRACTION, batch_size: int | None = None,
                   use_cache: bool = True) -> list[RemovalCurves]:
    """Removal curves of every example, from one batched pass over all perturbed variants.

    For example i with n words the variants are, for every j in
    ``{0} | {c(k, n) : k in bins} | {1, ..., c(curve_fraction, n)}``, the input without its
    top-j words and the input with only its top-j words (j = 0: the full and the empty
    input).  All variants of all examples go through the model in one
    :func:`~harness.models.removal.removed_proba` call.  Results are cached per (model, operator,
    inputs, maps, targets); a later call with other bins or another curve fraction only
    evaluates the variants not computed yet (again in one call).
    """
    bundle = inputs.model
    if bundle is None:
        raise ValueError("removal metrics need the model bundle in MetricInputs.model")
    check_operator(operator)
    bins, curve_fraction = _check_bins(bins), _check_fraction(curve_fraction)
    maps = [np.asarray(m, dtype=np.float64) for m in inputs.word_scores]
    if len(maps) != len(inputs.examples):
        raise ValueError(f"{len(inputs.examples)} examples but {len(maps)} attribution maps")
    targets = list(inputs.targets)
    if targets and len(targets) != len(maps):
        raise ValueError(f"{len(maps)} maps but {len(targets)} targets")
    segments = [visible_segments(bundle, e.segments, m.size) for e, m in zip(inputs.examples, maps)]
    for e, m in zip(inputs.examples, maps):
        if m.size == 0:
            raise ValueError(f"example {e.id} has no words")
    key = (id(bundle), operator, _digest(segments, maps, targets)) if use_cache else None
    hit = _CACHE.get(key) if use_cache else None
    if hit is not None and hit[0]() is bundle:
        _CACHE.move_to_end(key)
        curves = hit[1]
    else:
        curves = [RemovalCurves(target=-1, n_words=m.size, order=attribution_order(m)) for m in maps]

    groups: list[tuple[Segments, np.ndarray]] = []  # per example with new variants: (segments, remove masks)
    todo: list[tuple[int, str, int]] = []  # (example, "removed" | "kept", j) per variant
    length: list[int] = []  # words each variant sends to the model
    for i, (segs, c) in enumerate(zip(segments, curves)):
        n = c.n_words
        new, js, removed = _variants(n, bins, curve_fraction)
        if c.removed or c.kept:  # (curves from the cache: only the variants not computed yet)
            fresh = [v for v, (kind, j) in enumerate(new) if j not in getattr(c, kind)]
            new, js, removed = [new[v] for v in fresh], js[fresh], removed[fresh]
        if not new:
            continue
        rank = np.empty(n, dtype=np.int64)
        rank[c.order] = np.arange(n)
        top = rank[None, :] < js[:, None]  # each variant's top-j words
        groups.append((segs, np.where(removed[:, None], top, ~top)))  # True = remove
        todo.extend((i, kind, j) for kind, j in new)
        length.extend((np.where(removed, n - js, js) if operator == "delete" else np.full(len(new), n)).tolist())

    if todo:
        # one batched pass; variants ordered by remaining length so each chunk carries little padding
        bs = batch_size or auto_batch_size(bundle, max(length))
        if operator == "delete" and composable(bundle):
            order = np.argsort(np.asarray(length), kind="stable")
            proba = kept_outputs_grouped(bundle, [(sg, ~m) for sg, m in groups], proba_forward(bundle),
                                         bundle.num_labels, order, bs).astype(np.float64)
        else:
            var_segments = [sg for sg, m in groups for _ in range(len(m))]
            var_masks = [row for _, m in groups for row in m]
            perm = sorted(range(len(var_masks)), key=lambda v: length[v])
            proba_sorted = removed_proba(bundle, [var_segments[v] for v in perm], [var_masks[v] for v in perm],
                                         operator, bs)
            proba = np.empty_like(proba_sorted)
            proba[perm] = proba_sorted
        for v, (i, kind, j) in enumerate(todo):
            if kind == "removed" and j == 0:  # the full input: fixes the target class
                curves[i].target = int(targets[i]) if targets else int(np.argmax(proba[v]))
        rows = np.asarray([i for i, _, _ in todo])
        values = proba[np.arange(len(todo)), np.asarray([c.target for c in curves])[rows]].tolist()
        for (i, kind, j), p in zip(todo, values):
            (curves[i].removed if kind == "removed" else curves[i].kept)[j] = p
    for c in curves:  # the aliases: removing all = keeping none, keeping all = removing none
        c.removed[c.n_words] = c.kept[0]
        c.kept[c.n_words] = c.removed[0]
    if use_cache:
        _CACHE[key] = (weakref.ref(bundle), curves)
        _CACHE.move_to_end(key)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return curves


# --- per-example formulas (on one example's curves) ---------------------------------------

def comprehensiveness_one(c: RemovalCurves, bins: Sequence[float] = DEFAULT_BINS) -> float:
    return float(np.mean([c.p_full - c.removed[n_words_for(k, c.n_words)] for k in bins]))


def sufficiency_one(c: RemovalCurves, bins: Sequence[float] = DEFAULT_BINS) -> float:
    return float(np.mean([c.p_full - c.kept[n_words_for(k, c.n_words)] for k in bins]))


def _empty_gap(c: RemovalCurves) -> float:
    """1 - S(x, y, 0) = max(0, p(x) - p(empty))."""
    return max(0.0, c.p_full - c.p_empty)


def is_degenerate(c: RemovalCurves) -> bool:
    return _empty_gap(c) <= DEGENERATE_EPS


def norm_sufficiency_one(c: RemovalCurves, bins: Sequence[float] = DEFAULT_BINS) -> float:
    if is_degenerate(c):
        return 0.0
    s0 = 1.0 - _empty_gap(c)
    vals = []
    for k in bins:
        s = 1.0 - max(0.0, c.p_full - c.kept[n_words_for(k, c.n_words)])
        vals.append(min(1.0, max(0.0, (s - s0) / (1.0 - s0))))
    return float(np.mean(vals))


def norm_comprehensiveness_one(c: RemovalCurves, bins: Sequence[float] = DEFAULT_BINS) -> float:
    if is_degenerate(c):
        return 0.0
    denom = _empty_gap(c)
    vals = [min(1.0, max(0.0, c.p_full - c.removed[n_words_for(k, c.n_words)]) / denom) for k in bins]
    return float(np.mean(vals))


def _auc(curve: Sequence[float]) -> float:
    """Trapezoidal area of ``curve`` on the x-axis 0, 1/m, ..., 1 (m = len(curve) - 1)."""
    y = np.asarray(curve, dtype=np.float64)
    m = y.size - 1
    return float(((y[:-1] + y[1:]) / 2).sum() / m)


def deletion_auc_one(c: RemovalCurves, curve_fraction: float = DEFAULT_CURVE_FRACTION) -> float:
    m = n_words_for(curve_fraction, c.n_words)
    return _auc([c.removed[j] for j in range(m + 1)])


def insertion_auc_one(c: RemovalCurves, curve_fraction: float = DEFAULT_CURVE_FRACTION) -> float:
    m = n_words_for(curve_fraction, c.n_words)
    return _auc([c.kept[j] for j in range(m + 1)])


# --- registered metrics ---------------------------------------------------------------------

@dataclass
class _RemovalMetric:
    """Shared parameters: ``operator`` (removal operator), ``bins`` (AOPC fractions),
    ``curve_fraction`` (Deletion / Insertion budget).  All of them share one engine pass."""

    operator: str = "delete"
    bins: Sequence[float] = DEFAULT_BINS
    curve_fraction: float = DEFAULT_CURVE_FRACTION
    family = "faithfulness"

    def __post_init__(self) -> None:
        check_operator(self.operator)
        self.bins = _check_bins(self.bins)
        self.curve_fraction = _check_fraction(self.curve_fraction)
        self.details: dict[str, float] = {}

    def curves(self, inputs: MetricInputs) -> list[RemovalCurves]:
        return removal_curves(inputs, self.operator, self.bins, self.curve_fraction)


@register_metric("comprehensiveness")
@dataclass
class Comprehensiveness(_RemovalMetric):
    """AOPC comprehensiveness (paper 001 def. 2.2): mean drop of p(target) when the top-k% go."""

    higher_is_better = True

    def per_example(self, inputs: MetricInputs) -> np.ndarray:
        return np.array([comprehensiveness_one(c, self.bins) for c in self.curves(inputs)])


@register_metric("sufficiency")
@dataclass
class Sufficiency(_RemovalMetric):
    """AOPC sufficiency (paper 001 def. 2.1): mean drop of p(target) keeping only the top-k%."""

    higher_is_better = False

    def per_example(self, inputs: MetricInputs) -> np.ndarray:
        return np.array([sufficiency_one(c, self.bins) for c in self.curves(inputs)])


@register_metric("norm_comprehensiveness")
@dataclass
class NormalizedComprehensiveness(_RemovalMetric):
    """Normalised comprehensiveness, AOPC (paper 004 eq. 11-12)."""

    higher_is_better = True

    def per_example(self, inputs: MetricInputs) -> np.ndarray:
        curves = self.curves(inputs)
        self.details = {"share_degenerate": float(np.mean([is_degenerate(c) for c in curves]))}
        return np.array([norm_comprehensiveness_one(c, self.bins) for c in curves])


@register_metric("norm_sufficiency")
@dataclass
class NormalizedSufficiency(_RemovalMetric):
    """Normalised, reversed sufficiency, AOPC (paper 004 eq. 9-10): higher is better."""

    higher_is_better = True

    def per_example(self, inputs: MetricInputs) -> np.ndarray:
        curves = self.curves(inputs)
        self.details = {"share_degenerate": float(np.mean([is_degenerate(c) for c in curves]))}
        return np.array([norm_sufficiency_one(c, self.bins) for c in curves])


@register_metric("deletion_auc")
@dataclass
class DeletionAUC(_RemovalMetric):
    """Deletion (paper 003 sec. 3.3): area under p(target) while the top words go one by one."""

    higher_is_better = False

    def per_example(self, inputs: MetricInputs) -> np.ndarray:
        return np.array([deletion_auc_one(c, self.curve_fraction) for c in self.curves(inputs)])


@register_metric("insertion_auc")
@dataclass
class InsertionAUC(_RemovalMetric):
    """Insertion: area under p(target) while the top words come back one by one into the empty input."""

    higher_is_better = True

    def per_example(self, inputs: MetricInputs) -> np.ndarray:
        return np.array([insertion_auc_one(c, self.curve_fraction) for c in self.curves(inputs)])


REMOVAL_METRICS = ("comprehensiveness", "sufficiency", "norm_comprehensiveness", "norm_sufficiency",
                   "deletion_auc", "insertion_auc")


def removal_metric_params(operator: str = "delete", bins: Sequence[float] = DEFAULT_BINS,
                          curve_fraction: float = DEFAULT_CURVE_FRACTION) -> dict[str, dict]:
    """``TaskSpec.metric_params`` entries for the removal metrics (recorded with every score)."""
    check_operator(operator)
    aopc = {"operator": operator, "bins": list(_check_bins(bins))}
    curve = {"operator": operator, "curve_fraction": _check_fraction(curve_fraction)}
    return {"comprehensiveness": aopc, "sufficiency": aopc, "norm_comprehensiveness": aopc,
            "norm_sufficiency": aopc, "deletion_auc": curve, "insertion_auc": curve}


def register_removal_variant(name: str, base: str, **defaults):
    """Register ``name`` as ``base`` with other default parameters, so that one task can report
    the same removal metric under two operators side by side (T5: ``deletion_auc`` and a
    Deletion_BERT ``register_removal_variant("deletion_bert_auc", "deletion_auc", operator="mlm")``).
    Parameters given in ``TaskSpec.metric_params`` still override the defaults."""
    from harness.metrics.base import METRICS

    cls = METRICS.get(base)

    class Variant(cls):  # type: ignore[misc, valid-type]
        def __init__(self, **params):
            super().__init__(**{**defaults, **params})

    Variant.__name__ = Variant.__qualname__ = f"{cls.__name__}_{name}"
    Variant.__doc__ = f"{cls.__doc__} (registered as {name!r} with defaults {defaults})"
    return register_metric(name)(Variant)
