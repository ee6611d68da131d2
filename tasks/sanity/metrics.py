"""Per-example formulas of the sanity checks, on word-level attribution maps (numpy, no model).

Definitions (``a``, ``b`` = two maps of the same input, one score per word; n words):

- :func:`scale_unit`: ``a / max_i |a_i|`` (into [-1, 1], paper 003 appendix A treats attribution
  scores as values in [-1, 1]); an all-zero map stays all zero.
- :func:`sign_change_share` (paper 003 sec. 3.3 / table A5a): share of the n words whose
  attribution changes sign, i.e. ``a_i * b_i < 0`` (positive to negative or vice versa); a word
  that is exactly 0 in either map has no sign to change and counts as unchanged.
- :func:`magnitude_change` (paper 003 table A5b, "average of absolute differences in
  attribution magnitude"): ``mean_i | |a'_i| - |b'_i| |`` with ``a' = scale_unit(a)``,
  ``b' = scale_unit(b)``; :func:`absolute_change` is ``mean_i |a'_i - b'_i|`` (recorded too).
- :func:`spearman` (paper 001 sec. 2.2.3.3): Pearson correlation of the rank vectors, ties by
  average rank.  Undefined for a constant map; then: both constant -> 1 (the ordering did not
  change), only one constant -> 0.  Needs n >= 2.
- :func:`top_set`: the top ``c(f, n) = min(n, max(1, ceil(f * n)))`` words by signed score,
  greatest first, ties broken by position (the earlier word first), as in the removal metrics.
- :func:`jaccard_top` (paper 004 sec. 4.4, table 3, Jaccard@25%): ``|A & B| / |A | B|`` of the
  two top sets (f = 0.25).
"""

from __future__ import annotations

import numpy as np


def _arr(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError("empty attribution map")
    if not np.all(np.isfinite(a)):
        raise ValueError("attribution maps must be finite")
    return a


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _arr(a), _arr(b)
    if a.shape != b.shape:
        raise ValueError(f"maps of different lengths: {a.size} vs {b.size} words")
    return a, b


def scale_unit(a) -> np.ndarray:
    a = _arr(a)
    m = float(np.abs(a).max())
    return a / m if m > 0 else a.copy()


def sign_change_share(a, b) -> float:
    a, b = _pair(a, b)
    return float(np.mean(a * b < 0))


def magnitude_change(a, b) -> float:
    a, b = _pair(a, b)
    return float(np.mean(np.abs(np.abs(scale_unit(a)) - np.abs(scale_unit(b)))))


def absolute_change(a, b) -> float:
    a, b = _pair(a, b)
    return float(np.mean(np.abs(scale_unit(a) - scale_unit(b))))


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties share the mean of their positions."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.arange(1, x.size + 1, dtype=np.float64)
    vals, inv = np.unique(x, return_inverse=True)
    sums = np.bincount(inv, weights=ranks)
    counts = np.bincount(inv)
    return (sums / counts)[inv]


def spearman(a, b) -> float:
    a, b = _pair(a, b)
    if a.size < 2:
        raise ValueError("Spearman correlation needs at least 2 words")
    ca, cb = bool(np.all(a == a[0])), bool(np.all(b == b[0]))
    if ca or cb:
        return 1.0 if (ca and cb) else 0.0
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra * ra).sum() * (rb * rb).sum()))


def top_count(fraction: float, n: int) -> int:
    from harness.metrics.removal import n_words_for

    return n_words_for(fraction, n)


def top_set(a, fraction: float = 0.25) -> frozenset[int]:
    a = _arr(a)
    k = top_count(fraction, a.size)
    return frozenset(np.argsort(-a, kind="stable")[:k].tolist())


def jaccard_top(a, b, fraction: float = 0.25) -> float:
    a, b = _pair(a, b)
    A, B = top_set(a, fraction), top_set(b, fraction)
    return len(A & B) / len(A | B)
