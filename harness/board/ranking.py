"""Statistical rank groups for a leaderboard, and a quality-vs-cost Pareto view.

Rank groups: entries are sorted by mean score and compared with a two-sided paired sign-flip
permutation test of ``mean(a - b) == 0`` on the examples both were scored on (the paired
permutation / approximate randomization test recommended for NLP by Dror et al. 2018, "The
Hitchhiker's Guide to Testing Statistical Significance in Natural Language Processing").

Two groupings (``grouping``):

- ``"leader"`` (the board's): walking down the order, each entry is tested against the best
  entry of the current group; it joins the group unless it is significantly worse, else it
  starts a new group.  A group is thus a run of entries none of which is separable from the
  group's best: a long chain of small steps cannot merge clearly different entries into one
  tie.  The m-1 tests are chosen as the walk goes, so they are Bonferroni-corrected (valid for
  any m-1 tests, however chosen): separable iff ``p * (m-1) < alpha``.
- ``"adjacent"``: every adjacent pair is tested, the m-1 p-values are Holm-corrected (Holm
  1979, "A simple sequentially rejective multiple test procedure"), and runs of non-separable
  pairs chain into one group.

Members of a group share the rank range ``lo-hi``.

Pure numpy/matplotlib; no other project imports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "TEST_NAME",
    "RankGroup",
    "describe",
    "holm",
    "paired_permutation_pvalue",
    "pareto_front",
    "plot_quality_cost",
    "rank_groups",
]

#: Largest sign matrix built at once (entries), to bound memory: 2**20 doubles = 8 MiB.
_BATCH_ENTRIES = 1 << 20
#: Ties: a resampled |sum(d*s)| counts as "at least as extreme" down to this fraction of sum|d|
#: below the observed |sum(d)| (absorbs rounding; far below any real difference).
_REL_TOL = 1e-10


def describe(alpha: float = 0.05, n_resamples: int = 9999, grouping: str = "leader") -> str:
    """The one-line description of the test :func:`rank_groups` runs with these parameters."""
    how = ("each submission against the best of its group, Bonferroni-corrected over the m-1 tests"
           if grouping == "leader" else "Holm-corrected over adjacent pairs")
    return (f"paired sign-flip permutation test on shared examples ({n_resamples} random sign "
            f"vectors, exact enumeration when 2^n is at most {n_resamples + 1}), {how}, alpha {alpha:g}")


TEST_NAME = describe(0.05, 9999, "leader")


def _as_scores(x, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be finite")
    return arr


def paired_permutation_pvalue(a, b, *, n_resamples: int = 9999, seed: int = 0) -> float:
    """Two-sided paired sign-flip permutation test of ``mean(a - b) == 0``.

    ``a[i]`` and ``b[i]`` are two systems' scores on the same example ``i``.  With ``d = a - b``
    the statistic is ``|mean(d * s)|`` over sign vectors ``s`` in {-1, +1}^n (the paired
    permutation test of Dror et al. 2018).  When ``2**n <= n_resamples + 1`` all ``2**n`` sign
    vectors are enumerated and ``p = #{|mean(d*s)| >= |mean(d)|} / 2**n`` exactly; otherwise
    ``n_resamples`` random sign vectors from ``np.random.default_rng(seed)`` give the
    exact-inclusive estimate ``p = (1 + #{...}) / (1 + n_resamples)``.  Ties count (relative
    tolerance 1e-10 of ``sum|d|``).  All-zero differences give ``p = 1.0``.
    """
    a = _as_scores(a, "a")
    b = _as_scores(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same length, got {a.size} and {b.size}")
    n = a.size
    if n < 1:
        raise ValueError("need at least one paired example")
    n_resamples = int(n_resamples)
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    d = a - b
    scale = float(np.abs(d).sum())
    if scale == 0.0:
        return 1.0
    # Work on sums (mean * n): same ordering, no division.
    observed = abs(float(np.ones(n) @ d))
    threshold = observed - _REL_TOL * scale
    rows = max(1, _BATCH_ENTRIES // n)

    if n < 63 and 2 ** n <= n_resamples + 1:
        total = 2 ** n
        bits = np.arange(n, dtype=np.int64)
        count = 0
        for start in range(0, total, rows):
            codes = np.arange(start, min(total, start + rows), dtype=np.int64)
            signs = ((codes[:, None] >> bits) & 1).astype(np.float64) * 2.0 - 1.0
            count += int(np.count_nonzero(np.abs(signs @ d) >= threshold))
        return count / total

    rng = np.random.default_rng(seed)
    count = 0
    done = 0
    while done < n_resamples:
        k = min(rows, n_resamples - done)
        signs = np.where(rng.random((k, n)) < 0.5, 1.0, -1.0)
        count += int(np.count_nonzero(np.abs(signs @ d) >= threshold))
        done += k
    return (1 + count) / (1 + n_resamples)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values, in the input order.

    With the p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted value is
    ``max_{j <= i} min(1, (m - j + 1) * p_(j))``; rejecting where it is below ``alpha`` controls
    the family-wise error rate at ``alpha`` under any dependence.
    """
    p = np.asarray(list(pvalues), dtype=np.float64)
    if p.ndim != 1:
        raise ValueError("pvalues must be a flat sequence")
    if p.size == 0:
        return []
    if np.any(np.isnan(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError("p-values must lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted_sorted = np.maximum.accumulate(scaled)
    out = np.empty(m)
    out[order] = adjusted_sorted
    return [float(x) for x in out]


@dataclass(frozen=True)
class RankGroup:
    """One entry's place in the rank groups of :func:`rank_groups` (entries best first).

    ``position`` is the 1-based place in the sorted order; ``group`` the 0-based group index;
    ``rank_range = (lo, hi)`` the positions of the group's first and last member; ``label``
    ``"2"`` for a singleton or ``"2-4"`` for a tie group; ``rank`` the tied rank ``(lo+hi)/2``.
    The ``*_next`` fields describe the test that decided whether the next entry starts a new
    group (None for the last one): with ``grouping="adjacent"`` this entry against the next,
    Holm-adjusted; with ``"leader"`` the next entry against the best of this entry's group,
    Bonferroni-adjusted.  Examples shared, raw p, adjusted p, separable (adjusted p < alpha).
    """

    name: str
    mean: float
    n_examples: int
    position: int
    group: int
    rank_range: tuple[int, int]
    label: str
    rank: float
    n_shared_next: int | None = None
    p_next: float | None = None
    p_next_adjusted: float | None = None
    separable_next: bool | None = None


def rank_groups(entries: Iterable[tuple[str, Sequence[str], Sequence[float]]], *, higher_is_better: bool,
                alpha: float = 0.05, n_resamples: int = 9999, seed: int = 0,
                presorted: bool = False, grouping: str = "adjacent") -> list[RankGroup]:
    """Group entries into statistically tied ranks.

    ``entries`` are ``(name, example_ids, values)``: per-example scores keyed by example id.
    Entries are sorted by mean score (best first; equal means by name).  Each adjacent pair is
    tested with :func:`paired_permutation_pvalue` (``d = better - worse``, same ``seed`` for
    every pair) on the examples both share, aligned by id in sorted-id order; a pair sharing
    fewer than 2 examples is not separable (p = 1.0).  The m-1 p-values are Holm-corrected; a
    pair is separable iff its adjusted p < ``alpha``; runs of non-separable pairs form one group.
    Returns one :class:`RankGroup` per entry, best first (see :func:`describe` for the test).
    ``presorted``: the entries already come best first (e.g. by the board's recorded scores);
    their order is kept.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie in (0, 1)")
    if grouping not in ("adjacent", "leader"):
        raise ValueError(f"grouping must be 'adjacent' or 'leader', got {grouping!r}")
    parsed = []
    names = set()
    for name, ids, values in entries:
        name = str(name)
        if name in names:
            raise ValueError(f"duplicate entry name {name!r}")
        names.add(name)
        ids = [str(i) for i in ids]
        vals = _as_scores(values, f"values of {name!r}")
        if len(ids) != vals.size:
            raise ValueError(f"{name!r}: {len(ids)} example ids but {vals.size} values")
        if vals.size == 0:
            raise ValueError(f"{name!r} has no examples")
        by_id = dict(zip(ids, vals.tolist()))
        if len(by_id) != len(ids):
            raise ValueError(f"{name!r} has duplicate example ids")
        # fsum: exactly rounded, so the mean does not depend on the order the examples came in
        parsed.append((name, math.fsum(by_id.values()) / len(by_id), by_id))
    if not parsed:
        return []
    sign = -1.0 if higher_is_better else 1.0
    if not presorted:
        parsed.sort(key=lambda e: (sign * e[1], e[0]))

    def test(better: dict, worse: dict) -> tuple[int, float]:
        shared = sorted(better.keys() & worse.keys())
        if len(shared) < 2:
            return len(shared), 1.0
        return len(shared), paired_permutation_pvalue([better[i] for i in shared], [worse[i] for i in shared],
                                                      n_resamples=n_resamples, seed=seed)

    shared_counts, raw, adjusted, separable = [], [], [], []
    group_of = [0]
    if grouping == "adjacent":
        for (_, _, better), (_, _, worse) in zip(parsed, parsed[1:]):
            n, p = test(better, worse)
            shared_counts.append(n)
            raw.append(p)
        adjusted = holm(raw)
        separable = [q < alpha for q in adjusted]
        for sep in separable:
            group_of.append(group_of[-1] + 1 if sep else group_of[-1])
    else:  # leader: each entry against the best of its current group, Bonferroni over m-1 tests
        leader, m = 0, len(parsed)
        for k in range(1, m):
            n, p = test(parsed[leader][2], parsed[k][2])
            q = min(1.0, p * (m - 1))
            shared_counts.append(n)
            raw.append(p)
            adjusted.append(q)
            separable.append(q < alpha)
            if q < alpha:
                leader = k
            group_of.append(group_of[-1] + 1 if q < alpha else group_of[-1])
    bounds: dict[int, tuple[int, int]] = {}
    for pos, g in enumerate(group_of, start=1):
        lo, _ = bounds.get(g, (pos, pos))
        bounds[g] = (lo, pos)

    out = []
    for k, ((name, mean, by_id), g) in enumerate(zip(parsed, group_of)):
        lo, hi = bounds[g]
        last = k == len(parsed) - 1
        out.append(RankGroup(
            name=name, mean=mean, n_examples=len(by_id), position=k + 1, group=g, rank_range=(lo, hi),
            label=str(lo) if lo == hi else f"{lo}-{hi}", rank=(lo + hi) / 2,
            n_shared_next=None if last else shared_counts[k],
            p_next=None if last else raw[k],
            p_next_adjusted=None if last else adjusted[k],
            separable_next=None if last else separable[k],
        ))
    return out


def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def pareto_front(points: Iterable[tuple[str, float, float | None]], *, higher_is_better: bool) -> set[str]:
    """Names of the points on the quality-vs-cost Pareto front.

    ``points`` are ``(name, quality, cost)``; lower cost is better, quality is better higher or
    lower per ``higher_is_better``.  A point is on the front iff no other point is at least as
    good on both and strictly better on one (identical points are all on it).  Points whose cost
    or quality is None or non-finite take no part (neither on the front nor dominating).
    """
    sign = 1.0 if higher_is_better else -1.0
    pts = [(str(n), sign * float(q), float(c)) for n, q, c in points if _finite(q) and _finite(c)]
    front = set()
    for i, (name, q, c) in enumerate(pts):
        dominated = any(q2 >= q and c2 <= c and (q2 > q or c2 < c)
                        for j, (_, q2, c2) in enumerate(pts) if j != i)
        if not dominated:
            front.add(name)
    return front


def plot_quality_cost(points: Sequence[tuple[str, float, float | None]], front: Iterable[str], path: str | Path, *,
                      title: str, quality_label: str, cost_label: str = "seconds per example",
                      higher_is_better: bool = True) -> Path:
    """Scatter quality (y) against cost (x) to an SVG at ``path``; returns the path.

    Front points (``front``, e.g. from :func:`pareto_front`) are highlighted and joined by a step
    line; every point is labelled with its name.  The x axis is logarithmic when all costs are
    positive and span more than a factor 10.  Points without a finite cost or quality cannot be
    placed and are listed under the axes instead.  Deterministic output: Agg backend, fixed
    size, fixed SVG hash salt, no date metadata.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    front = set(front)
    placed = sorted(((str(n), float(q), float(c)) for n, q, c in points if _finite(q) and _finite(c)),
                    key=lambda p: (p[2], p[1], p[0]))
    unplaced = sorted(str(n) for n, q, c in points if not (_finite(q) and _finite(c)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with plt.rc_context({"svg.hashsalt": "attriboard", "font.size": 9}):
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
        costs = [c for _, _, c in placed]
        if costs and min(costs) > 0 and max(costs) > 10 * min(costs):
            ax.set_xscale("log")
        off = [p for p in placed if p[0] not in front]
        on = [p for p in placed if p[0] in front]
        if off:
            ax.scatter([c for _, _, c in off], [q for _, q, _ in off], s=28, color="#8c8c8c", zorder=2,
                       label="dominated")
        if on:
            if len(on) > 1:
                ax.step([c for _, _, c in on], [q for _, q, _ in on], where="post", color="#c44e52",
                        linewidth=1.2, alpha=0.8, zorder=1)
            ax.scatter([c for _, _, c in on], [q for _, q, _ in on], s=46, color="#c44e52", zorder=3,
                       edgecolors="#333333", linewidths=0.6, label="Pareto front")
        for name, q, c in placed:
            ax.annotate(name, (c, q), xytext=(4, 4), textcoords="offset points", fontsize=8)
        ax.set_xlabel(f"{cost_label} (lower is better)")
        ax.set_ylabel(f"{quality_label} ({'higher' if higher_is_better else 'lower'} is better)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.margins(x=0.1, y=0.08)  # room for the name labels at the edges
        if placed:
            ax.legend(loc="best", fontsize=8, frameon=False)
        else:
            ax.text(0.5, 0.5, "no points with a cost", transform=ax.transAxes, ha="center", va="center")
        if unplaced:
            fig.text(0.01, 0.01, "not shown (no cost): " + ", ".join(unplaced), fontsize=7, ha="left",
                     va="bottom")
        fig.tight_layout()
        fig.savefig(path, format="svg", metadata={"Date": None})
        plt.close(fig)
    return path
