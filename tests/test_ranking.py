"""Rank groups (paired permutation test + Holm) and the quality-vs-cost Pareto view."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from scipy import stats

from harness.board.ranking import (
    TEST_NAME,
    RankGroup,
    describe,
    holm,
    paired_permutation_pvalue,
    pareto_front,
    plot_quality_cost,
    rank_groups,
)


def _brute_force_p(d) -> float:
    """Exact two-sided sign-flip p-value by enumerating every sign vector with itertools."""
    d = np.asarray(d, dtype=float)
    obs = abs(d.mean())
    hits = sum(abs(np.mean(d * np.array(s))) >= obs - 1e-12 for s in itertools.product((1, -1), repeat=d.size))
    return hits / 2 ** d.size


def _scipy_p(a, b, n_resamples, seed=0) -> float:
    res = stats.permutation_test(
        (np.asarray(a, float), np.asarray(b, float)),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples", vectorized=True, alternative="two-sided",
        n_resamples=n_resamples, random_state=seed,
    )
    return float(res.pvalue)


# ---------------------------------------------------------------- paired_permutation_pvalue


def test_pvalue_hand_computed_exact():
    # d = [1, 2, 3], mean 2.  The 8 sign vectors and |mean(d*s)|:
    #   +++ 6/3=2   ++- 0/3=0   +-+ 2/3   +-- -4/3 -> 4/3
    #   -++ 4/3     -+- -2/3    --+ 0     --- -6/3 -> 2
    # |mean| >= 2 only for +++ and ---  ->  p = 2/8 = 0.25
    assert paired_permutation_pvalue([1, 2, 3], [0, 0, 0]) == 0.25
    assert paired_permutation_pvalue([0, 0, 0], [1, 2, 3]) == 0.25  # two-sided
    # d = [1, 1]: +- and -+ give 0, ++ and -- give 1 -> 2/4
    assert paired_permutation_pvalue([2, 3], [1, 2]) == 0.5
    # d = [1]: both signs reach |1| -> 1.0
    assert paired_permutation_pvalue([1.0], [0.0]) == 1.0
    # d = [1, 1, 1, 1, 0]: the 0 entry's sign never matters; |mean| = 4/5 needs all four
    # others equal: 2 of 16 patterns, times 2 for the zero's sign -> 4/32
    assert paired_permutation_pvalue([1, 1, 1, 1, 5], [0, 0, 0, 0, 5]) == 4 / 32


def test_pvalue_ties_count_despite_rounding():
    # 0.1 + 0.2 style values: the all-plus and all-minus vectors must count even though the
    # matrix product may round differently from the observed mean.
    d = np.array([0.1, 0.2, 0.3, 0.7, 0.11, 0.13])
    assert paired_permutation_pvalue(d, np.zeros_like(d)) == pytest.approx(_brute_force_p(d))
    assert paired_permutation_pvalue(d, np.zeros_like(d)) >= 2 / 64


def test_pvalue_all_zero_differences():
    a = np.linspace(0, 1, 40)
    assert paired_permutation_pvalue(a, a) == 1.0
    assert paired_permutation_pvalue(a, a.copy(), n_resamples=10) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pvalue_exact_matches_brute_force_and_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.3, 1.0, 10)
    b = rng.normal(0.0, 1.0, 10)
    p = paired_permutation_pvalue(a, b)  # 2**10 = 1024 <= 10000 -> exact enumeration
    assert p == pytest.approx(_brute_force_p(a - b), abs=1e-12)
    # scipy enumerates exactly too when n_resamples >= 2**n
    assert p == pytest.approx(_scipy_p(a, b, n_resamples=9999), abs=1e-12)
    assert p * 1024 == pytest.approx(round(p * 1024))


def test_pvalue_exact_regime_boundary():
    d = np.arange(1, 11, dtype=float)  # n = 10
    exact = _brute_force_p(d)
    # 2**10 = 1024 <= 1023 + 1 -> exact; with 1022 resamples -> Monte Carlo (1 + k) / 1023
    assert paired_permutation_pvalue(d, 0 * d, n_resamples=1023) == exact
    mc = paired_permutation_pvalue(d, 0 * d, n_resamples=1022)
    assert mc != exact
    assert round(mc * 1023) == pytest.approx(mc * 1023)


def test_pvalue_monte_carlo_matches_brute_force():
    # n = 14: 2**14 = 16384 > 10000 -> random sign vectors; compare with full enumeration.
    rng = np.random.default_rng(4)
    a = rng.normal(0.25, 1.0, 14)
    b = rng.normal(0.0, 1.0, 14)
    exact = _brute_force_p(a - b)
    assert 0.05 < exact < 0.9  # a regime where the comparison is informative
    p = paired_permutation_pvalue(a, b, n_resamples=9999)
    se = np.sqrt(exact * (1 - exact) / 9999)
    assert abs(p - exact) < 5 * se


@pytest.mark.parametrize("shift", [0.1, 0.25])
def test_pvalue_monte_carlo_matches_scipy(shift):
    rng = np.random.default_rng(11)
    a = rng.normal(shift, 1.0, 60)
    b = rng.normal(0.0, 1.0, 60)
    R = 40_000
    ours = paired_permutation_pvalue(a, b, n_resamples=R, seed=3)
    theirs = _scipy_p(a, b, n_resamples=R, seed=5)
    assert 0.01 < theirs < 0.95
    se = np.sqrt(2 * theirs * (1 - theirs) / R)  # both are estimates
    assert abs(ours - theirs) < 5 * se + 1e-3


def test_pvalue_detects_a_real_difference_and_is_deterministic():
    rng = np.random.default_rng(0)
    a = rng.normal(1.0, 0.2, 50)
    b = a - 0.5 + rng.normal(0, 0.05, 50)
    p = paired_permutation_pvalue(a, b)
    assert p == 1 / 10000  # nothing reaches the observed mean: the smallest possible estimate
    c = a + rng.normal(0, 0.3, 50)
    assert paired_permutation_pvalue(a, c, seed=4) == paired_permutation_pvalue(a, c, seed=4)


def test_pvalue_is_fast():
    rng = np.random.default_rng(0)
    a, b = rng.random(500), rng.random(500)
    t0 = time.perf_counter()
    paired_permutation_pvalue(a, b, n_resamples=9999)
    assert time.perf_counter() - t0 < 3.0  # ~0.2 s here; generous for a loaded machine


@pytest.mark.parametrize("a, b", [
    ([], []),
    ([1.0, 2.0], [1.0]),
    ([[1.0, 2.0]], [[1.0, 2.0]]),
    ([1.0, float("nan")], [1.0, 2.0]),
    ([1.0, float("inf")], [1.0, 2.0]),
])
def test_pvalue_rejects_bad_input(a, b):
    with pytest.raises(ValueError):
        paired_permutation_pvalue(a, b)


# ---------------------------------------------------------------- holm


def test_holm_hand_computed():
    # sorted: 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # 0.01*4, 0.02*3, 0.03*2, 0.04*1 -> 0.04, 0.06, 0.06, 0.06 (monotone)
    assert holm([0.04, 0.03, 0.02, 0.01]) == pytest.approx([0.06, 0.06, 0.06, 0.04])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped
    assert holm([0.02]) == [0.02]
    assert holm([]) == []
    assert holm([0.01, 0.01]) == pytest.approx([0.02, 0.02])


def test_holm_rejects_invalid():
    for bad in ([float("nan")], [-0.1], [1.5]):
        with pytest.raises(ValueError):
            holm(bad)


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 17):
        p = rng.random(m) ** 3
        expected = multitest.multipletests(p, method="holm")[1]
        assert holm(p) == pytest.approx(list(expected))


# ---------------------------------------------------------------- rank_groups


def _ids(n, prefix="e"):
    return [f"{prefix}{i:03d}" for i in range(n)]


def _labels(res):
    return {r.name: r.label for r in res}


def test_rank_groups_clearly_separated():
    rng = np.random.default_rng(0)
    ids = _ids(30)
    base = rng.normal(0, 0.02, 30)
    entries = [("mid", ids, 0.5 + base + rng.normal(0, 0.01, 30)),
               ("top", ids, 0.9 + base + rng.normal(0, 0.01, 30)),
               ("low", ids, 0.1 + base + rng.normal(0, 0.01, 30))]
    res = rank_groups(entries, higher_is_better=True)
    assert [r.name for r in res] == ["top", "mid", "low"]
    assert [r.label for r in res] == ["1", "2", "3"]
    assert [r.rank for r in res] == [1.0, 2.0, 3.0]
    assert [r.group for r in res] == [0, 1, 2]
    assert [r.rank_range for r in res] == [(1, 1), (2, 2), (3, 3)]
    assert [r.position for r in res] == [1, 2, 3]
    assert res[0].p_next == pytest.approx(1 / 10000)
    assert res[0].p_next_adjusted == pytest.approx(2 / 10000)  # Holm over m-1 = 2 tests
    assert res[0].separable_next is True and res[1].separable_next is True
    assert res[0].n_shared_next == 30
    last = res[-1]
    assert (last.p_next, last.p_next_adjusted, last.separable_next, last.n_shared_next) == (None, None, None, None)
    assert res[1].mean == pytest.approx(float(np.mean(entries[0][2])))
    assert all(isinstance(r, RankGroup) for r in res)
    with pytest.raises(Exception):
        res[0].label = "x"  # frozen


def test_rank_groups_identical_distribution_one_group():
    ids = _ids(25)
    vals = np.random.default_rng(1).random(25)
    res = rank_groups([(n, ids, vals) for n in ("c", "a", "b")], higher_is_better=True)
    assert [r.name for r in res] == ["a", "b", "c"]  # equal means: by name
    assert [r.label for r in res] == ["1-3"] * 3
    assert [r.rank for r in res] == [2.0] * 3
    assert [r.rank_range for r in res] == [(1, 3)] * 3
    assert [r.p_next for r in res[:-1]] == [1.0, 1.0]
    assert [r.separable_next for r in res[:-1]] == [False, False]

    # noisy draws from one distribution: not separable either
    rng = np.random.default_rng(2)
    res = rank_groups([(n, ids, rng.normal(0.5, 0.1, 25)) for n in ("x", "y", "z")], higher_is_better=True)
    assert {r.label for r in res} == {"1-3"}


def _three(seed, n=40):
    rng = np.random.default_rng(seed)
    ids = _ids(n)
    a = 1.0 + rng.normal(0, 0.3, n)
    b = a - 0.1 + rng.normal(0, 0.3, n)  # a little below a
    c = b - 0.1 + rng.normal(0, 0.3, n)  # a little below b, so clearly below a
    return rng, ids, a, b, c


def test_rank_groups_chaining_and_split():
    rng, ids, a, b, c = _three(11)
    n = len(ids)
    res = rank_groups([("A", ids, a), ("B", ids, b), ("C", ids, c)], higher_is_better=True)
    assert [r.name for r in res] == ["A", "B", "C"]
    # A vs C alone is separable; A-B and B-C are not: the group exists only through chaining via B
    assert paired_permutation_pvalue(a, c) < 0.05
    assert [r.label for r in rank_groups([("A", ids, a), ("C", ids, c)], higher_is_better=True)] == ["1", "2"]
    assert all(r.p_next > 0.05 for r in res[:-1])
    assert [r.separable_next for r in res[:-1]] == [False, False]
    assert [r.label for r in res] == ["1-3", "1-3", "1-3"]

    # a separated fourth entry starts a new group; a tie pair at the bottom
    d = c - 2.0 + rng.normal(0, 0.05, n)
    e = d + rng.normal(0, 0.05, n)
    res = rank_groups([("A", ids, a), ("B", ids, b), ("C", ids, c), ("D", ids, d), ("E", ids, e)],
                      higher_is_better=True)
    by = {r.name: r for r in res}
    assert [by[k].label for k in "ABC"] == ["1-3"] * 3
    assert {by["D"].label, by["E"].label} == {"4-5"}
    assert by["C"].separable_next is True
    assert by["D"].rank == by["E"].rank == 4.5
    assert [r.group for r in res] == [0, 0, 0, 1, 1]


def test_leader_grouping_does_not_chain_clearly_different_entries():
    rng, ids, a, b, c = _three(27)
    # data like the chaining case: adjacent chaining puts A, B, C in one group although
    # A vs C alone is separable; against the group's best, C is tested against A and split off
    entries = [("A", ids, a), ("B", ids, b), ("C", ids, c)]
    assert [r.label for r in rank_groups(entries, higher_is_better=True)] == ["1-3"] * 3
    lead = rank_groups(entries, higher_is_better=True, grouping="leader")
    p_ab, p_ac = paired_permutation_pvalue(a, b), paired_permutation_pvalue(a, c)
    # Bonferroni over the m-1 = 2 tests; the second test is C against A (B did not split off)
    assert lead[0].p_next == pytest.approx(p_ab) and lead[0].p_next_adjusted == pytest.approx(min(1, 2 * p_ab))
    assert lead[1].p_next == pytest.approx(p_ac) and lead[1].p_next_adjusted == pytest.approx(min(1, 2 * p_ac))
    assert p_ab > 0.05 and 2 * p_ac < 0.05, "premise: A-B not separable, A vs C separable after the correction"
    assert [r.label for r in lead] == ["1-2", "1-2", "3"]
    with pytest.raises(ValueError, match="grouping"):
        rank_groups(entries, higher_is_better=True, grouping="nearest")


def test_leader_grouping_restarts_at_each_new_group():
    rng = np.random.default_rng(5)
    ids = [f"e{i}" for i in range(80)]
    base = rng.normal(size=80)
    steps = {"A": 6.0, "B": 6.0 + rng.normal(0, 0.01), "C": 3.0, "D": 3.0 - 0.001, "E": 0.0}
    entries = [(k, ids, base + v + rng.normal(0, 0.3, 80)) for k, v in steps.items()]
    res = rank_groups(entries, higher_is_better=True, grouping="leader")
    assert [r.label for r in res] == ["1-2", "1-2", "3-4", "3-4", "5"]
    assert [r.separable_next for r in res[:-1]] == [False, True, False, True]


def test_rank_groups_holm_turns_raw_significance_into_a_tie():
    _, ids, a, b, c = _three(4)
    res = rank_groups([("A", ids, a), ("B", ids, b), ("C", ids, c)], higher_is_better=True)
    raw = [r.p_next for r in res[:-1]]
    assert all(0.025 < p < 0.05 for p in raw)  # each significant alone at 0.05 ...
    assert [r.p_next_adjusted for r in res[:-1]] == pytest.approx(holm(raw))
    assert all(r.p_next_adjusted >= 0.05 for r in res[:-1])  # ... but not after Holm
    assert [r.label for r in res] == ["1-3"] * 3
    # and with a looser alpha the same p-values separate everything
    assert [r.label for r in rank_groups([("A", ids, a), ("B", ids, b), ("C", ids, c)],
                                         higher_is_better=True, alpha=0.1)] == ["1", "2", "3"]


def test_rank_groups_aligns_by_id():
    rng = np.random.default_rng(4)
    n = 30
    ids = _ids(n)
    a = rng.normal(0.6, 0.2, n)
    b = a - 0.05 + rng.normal(0, 0.2, n)
    c = b - 0.05 + rng.normal(0, 0.2, n)
    ref = rank_groups([("A", ids, a), ("B", ids, b), ("C", ids, c)], higher_is_better=True)
    assert all(0.001 < r.p_next < 0.999 for r in ref[:-1])  # Monte Carlo p-values, not at a bound

    shuffled = []
    for k, (name, v) in enumerate((("C", c), ("A", a), ("B", b))):
        perm = np.random.default_rng(100 + k).permutation(n)
        shuffled.append((name, [ids[i] for i in perm], v[perm]))
    got = rank_groups(shuffled, higher_is_better=True)
    assert got == ref

    # misalignment would change the answer: pairing b's values with the wrong ids
    wrong = rank_groups([("A", ids, a), ("B", ids[::-1], b), ("C", ids, c)], higher_is_better=True)
    assert [r.p_next for r in wrong[:-1]] != [r.p_next for r in ref[:-1]]


def test_rank_groups_only_shared_examples_count():
    rng = np.random.default_rng(5)
    ids = _ids(40)
    a = rng.normal(0.5, 0.1, 40)
    b = a - 0.3
    # B was scored on the first 20 examples only, plus 5 it alone has (which must be ignored)
    b_ids = ids[:20] + _ids(5, prefix="only_b")
    b_vals = np.concatenate([b[:20], np.full(5, 100.0)])
    res = rank_groups([("A", ids, a), ("B", b_ids, b_vals)], higher_is_better=False)
    # lower is better: A's mean (~0.5) beats B's (pulled up by the 100s)
    assert [r.name for r in res] == ["A", "B"]
    assert res[0].n_shared_next == 20
    assert res[0].p_next == pytest.approx(paired_permutation_pvalue(a[:20], b[:20]))
    assert res[1].n_examples == 25


def test_rank_groups_fewer_than_two_shared_examples():
    entries = [("A", ["x1", "x2", "x3"], [0.9, 0.95, 0.92]),
               ("B", ["y1", "y2", "x1"], [0.1, 0.12, 0.11]),
               ("C", ["z1", "z2"], [0.0, 0.01])]
    res = rank_groups(entries, higher_is_better=True)
    assert [r.name for r in res] == ["A", "B", "C"]
    assert [r.n_shared_next for r in res[:-1]] == [1, 0]
    assert [r.p_next for r in res[:-1]] == [1.0, 1.0]
    assert [r.p_next_adjusted for r in res[:-1]] == [1.0, 1.0]
    assert [r.label for r in res] == ["1-3"] * 3


def test_rank_groups_lower_is_better():
    rng = np.random.default_rng(6)
    ids = _ids(30)
    entries = [("fast", ids, 1.0 + rng.normal(0, 0.01, 30)),
               ("slow", ids, 5.0 + rng.normal(0, 0.01, 30)),
               ("twin", ids, 5.0 + rng.normal(0, 0.01, 30))]
    hi = rank_groups(entries, higher_is_better=True)
    lo = rank_groups(entries, higher_is_better=False)
    assert lo[0].name == "fast" and lo[0].label == "1"
    assert {r.name: r.label for r in lo[1:]} == {"slow": "2-3", "twin": "2-3"}
    assert hi[-1].name == "fast" and hi[-1].label == "3"
    assert [r.name for r in hi] == [r.name for r in reversed(lo)]


def test_rank_groups_single_empty_and_determinism():
    assert rank_groups([], higher_is_better=True) == []
    (only,) = rank_groups([("solo", ["a", "b"], [1.0, 2.0])], higher_is_better=True)
    assert (only.label, only.rank, only.rank_range, only.group, only.position) == ("1", 1.0, (1, 1), 0, 1)
    assert only.p_next is None and only.separable_next is None

    rng = np.random.default_rng(8)
    ids = _ids(200)  # 2**200 sign vectors: Monte Carlo path
    entries = [(f"s{k}", ids, rng.normal(0.5 + 0.02 * k, 0.3, 200)) for k in range(5)]
    r1 = rank_groups(entries, higher_is_better=True, seed=1)
    r2 = rank_groups(list(reversed(entries)), higher_is_better=True, seed=1)
    assert r1 == r2
    assert any(0.0 < r.p_next < 1.0 for r in r1[:-1])


def test_rank_groups_rejects_bad_entries():
    with pytest.raises(ValueError):
        rank_groups([("A", ["a"], [1.0]), ("A", ["a"], [2.0])], higher_is_better=True)
    with pytest.raises(ValueError):
        rank_groups([("A", ["a", "a"], [1.0, 2.0])], higher_is_better=True)
    with pytest.raises(ValueError):
        rank_groups([("A", ["a", "b"], [1.0])], higher_is_better=True)
    with pytest.raises(ValueError):
        rank_groups([("A", [], [])], higher_is_better=True)


def test_describe():
    assert TEST_NAME == describe(0.05, 9999) == describe(0.05, 9999, "leader")
    assert "Bonferroni" in TEST_NAME and "best of its group" in TEST_NAME
    assert "Holm" in describe(0.05, 9999, "adjacent") and "adjacent pairs" in describe(0.05, 9999, "adjacent")
    assert "alpha 0.05" in TEST_NAME and "9999" in TEST_NAME
    assert "alpha 0.01" in describe(0.01, 999) and "999 random" in describe(0.01, 999)


# ---------------------------------------------------------------- pareto_front


PTS = [
    ("A", 0.9, 10.0),
    ("B", 0.8, 1.0),
    ("C", 0.7, 5.0),            # dominated by B (higher is better)
    ("D", 0.9, 20.0),           # same quality as A, costlier: dominated
    ("E", 0.8, 1.0),            # identical to B: both stay
    ("F", 1.0, None),           # no cost: out, and dominates nothing
    ("G", 0.95, float("nan")),  # non-finite cost: out
]


def test_pareto_front_higher_is_better():
    assert pareto_front(PTS, higher_is_better=True) == {"A", "B", "E"}


def test_pareto_front_lower_is_better():
    # C (0.7 at 5) now dominates A and D; B/E are cheapest
    assert pareto_front(PTS, higher_is_better=False) == {"B", "C", "E"}


def test_pareto_front_small_cases():
    assert pareto_front([], higher_is_better=True) == set()
    assert pareto_front([("x", 0.5, None)], higher_is_better=True) == set()
    assert pareto_front([("x", 0.5, 3.0)], higher_is_better=True) == {"x"}
    # equal cost, better quality dominates; equal quality, cheaper dominates
    assert pareto_front([("x", 0.5, 3.0), ("y", 0.6, 3.0)], higher_is_better=True) == {"y"}
    assert pareto_front([("x", 0.5, 3.0), ("y", 0.5, 2.0)], higher_is_better=True) == {"y"}
    # a trade-off: both on the front
    assert pareto_front([("x", 0.5, 1.0), ("y", 0.6, 3.0)], higher_is_better=True) == {"x", "y"}
    assert pareto_front([("x", 0.5, 1.0), ("y", 0.6, 3.0)], higher_is_better=False) == {"x"}
    assert pareto_front([("x", 0.5, float("inf")), ("y", 0.1, 9.0)], higher_is_better=True) == {"y"}


# ---------------------------------------------------------------- plot_quality_cost


def test_plot_quality_cost_svg_deterministic(tmp_path):
    front = pareto_front(PTS, higher_is_better=True)
    p1 = plot_quality_cost(PTS, front, tmp_path / "a" / "q.svg", title="AOPC vs cost", quality_label="AOPC")
    p2 = plot_quality_cost(PTS, front, tmp_path / "b.svg", title="AOPC vs cost", quality_label="AOPC")
    b1, b2 = p1.read_bytes(), p2.read_bytes()
    assert b1 == b2
    text = b1.decode()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "<dc:date>" not in text  # no timestamp
    for name in "ABCDE":
        assert f"<!-- {name} -->" in text  # every placed point is annotated
    assert "not shown (no cost): F, G" in text
    assert "10^{" in text  # costs 1..20 span > 10x: log x axis


def test_plot_quality_cost_linear_axis_and_lower_is_better(tmp_path):
    pts = [("x", 0.2, 2.0), ("y", 0.1, 3.0), ("z", 0.3, 4.0)]
    front = pareto_front(pts, higher_is_better=False)
    assert front == {"x", "y"}
    path = plot_quality_cost(pts, front, tmp_path / "l.svg", title="t", quality_label="comprehensiveness",
                             higher_is_better=False)
    text = path.read_text()
    assert "10^{" not in text  # span 2x: linear axis
    assert "lower is better" in text
    # an empty plot still writes a file
    empty = plot_quality_cost([], set(), tmp_path / "e.svg", title="t", quality_label="q")
    assert empty.exists() and empty.stat().st_size > 0

