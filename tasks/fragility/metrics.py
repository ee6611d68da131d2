"""Objectives and metrics of the fragility task (paper 000 eq. 1-5), on word-level maps.

Objectives (what the attack maximises between the original map I0 and a candidate's I):

- :func:`l2_distance`: ``||I0 - I||_2`` (eq. 3), on maps divided by their L2 norm
  (paper 000 does this for LIME; here for every explainer, so the objective compares
  patterns, not the scale of an explainer's scores);
- :func:`delta_lom`: ``|LOM(I0) - LOM(I)|`` (eq. 2) with the location of mass (eq. 1)
  ``LOM(I) = sum_t m_t * t / sum_t m_t`` over word positions t = 0..n-1.  The mass is
  ``m_t = |i_t|`` by default: with signed maps (IG, LIME, gradient x input) the paper's
  literal ``sum_t i_t`` can be ~0 and LOM unbounded; ``signed=True`` gives eq. 1 as
  printed.  A map without mass has its LOM at the centre (n-1)/2.  Positions counted from
  [CLS] (paper: "length along with special tokens") shift every LOM by the same constant,
  so Delta-LOM is the same.

Metrics (original vs perturbed map, aligned one-for-one: swaps keep positions):

- :func:`spearman_clipped`: ``max(0, Spearman)`` (eq. 4), ties by average rank; a
  constant map correlates 1 with an identical map and 0 otherwise;
- :func:`top_k_intersection`: share of the original top half (``k = max(1, n // 2)``
  words by |score|, ties broken by position) that stays in the perturbed top half (eq. 5).

Buckets: a candidate with m of n words changed falls in bucket ``ceil(10 m / n) - 1``,
i.e. "0-10%" holds 0 < m/n <= 0.1, ..., "40-50%" holds 0.4 < m/n <= 0.5.
"""

from __future__ import annotations

import numpy as np

BUCKETS = ("0-10%", "10-20%", "20-30%", "30-40%", "40-50%")


def _arr(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(a)):
        raise ValueError("attribution maps must be finite")
    return a


def lom(scores, signed: bool = False) -> float:
    """Location of mass (paper 000 eq. 1) over word positions 0..n-1."""
    s = _arr(scores)
    n = s.size
    if n == 0:
        raise ValueError("LOM of an empty map")
    mass = s if signed else np.abs(s)
    total = mass.sum()
    if abs(total) <= 1e-12 * max(1.0, np.abs(s).sum()) or total == 0:
        return (n - 1) / 2.0
    return float((mass * np.arange(n)).sum() / total)


def delta_lom(a, b, signed: bool = False) -> float:
    """|LOM(a) - LOM(b)| (paper 000 eq. 2)."""
    return abs(lom(a, signed) - lom(b, signed))


def l2_distance(a, b, normalize: bool = True) -> float:
    """||a - b||_2 (paper 000 eq. 3), by default between L2-normalised maps (zero map stays 0)."""
    a, b = _arr(a), _arr(b)
    if a.shape != b.shape:
        raise ValueError(f"maps of different lengths: {a.shape} vs {b.shape}")
    if normalize:
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        a = a / na if na > 0 else a
        b = b / nb if nb > 0 else b
    return float(np.linalg.norm(a - b))


def _rank(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, method="average")


def spearman(a, b) -> float:
    """Spearman rank correlation; constant maps: 1 if identical else 0."""
    a, b = _arr(a), _arr(b)
    if a.shape != b.shape:
        raise ValueError(f"maps of different lengths: {a.shape} vs {b.shape}")
    if a.size < 2:
        return 1.0 if np.array_equal(a, b) else 0.0
    ra, rb = _rank(a), _rank(b)
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return 1.0 if np.array_equal(ra, rb) else 0.0
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra @ rb) / np.sqrt((ra @ ra) * (rb @ rb)))


def spearman_clipped(a, b) -> float:
    """max(0, Spearman(a, b)) (paper 000 eq. 4)."""
    return max(0.0, spearman(a, b))


def top_k_indices(scores, k: int) -> set[int]:
    s = _arr(scores)
    order = sorted(range(s.size), key=lambda i: (-abs(s[i]), i))
    return set(order[:k])


def top_k_intersection(a, b, share: float = 0.5) -> float:
    """Share of a's top ``share`` words by |score| that are also in b's (paper 000 eq. 5)."""
    a, b = _arr(a), _arr(b)
    if a.shape != b.shape:
        raise ValueError(f"maps of different lengths: {a.shape} vs {b.shape}")
    k = max(1, int(np.floor(share * a.size)))
    return len(top_k_indices(a, k) & top_k_indices(b, k)) / k


def bucket_index(m: int, n: int) -> int:
    """Bucket of a candidate with m of n words changed (0 < m <= n / 2)."""
    if not 0 < m <= n:
        raise ValueError(f"need 0 < m <= n, got m={m}, n={n}")
    return (10 * m + n - 1) // n - 1


def bucket_name(m: int, n: int) -> str:
    b = bucket_index(m, n)
    if b >= len(BUCKETS):
        raise ValueError(f"{m}/{n} words changed is beyond 50%")
    return BUCKETS[b]


OBJECTIVES = {
    "l2": lambda i0, i, p: l2_distance(i0, i, normalize=p.get("l2_normalize", True)),
    "delta_lom": lambda i0, i, p: delta_lom(i0, i, signed=p.get("lom_signed", False)),
}
