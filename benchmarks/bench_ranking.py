"""Speed of the board's statistical rank groups (:func:`harness.board.ranking.rank_groups`).

A board like the default e-SNLI one: 23 submissions x 300 shared examples, per-example scores
in [0, 1] with means 0.05 apart; 9,999 random sign vectors per test; both groupings.
``extra_info`` holds the number of tests and the seconds per test.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.board.ranking import rank_groups

N_SUBS, N_EXAMPLES = 23, 300


def _entries():
    rng = np.random.default_rng(0)
    ids = [f"e{i}" for i in range(N_EXAMPLES)]
    base = rng.uniform(size=N_EXAMPLES)
    return [(f"s{k:02d}", ids, np.clip(base - 0.05 * k + rng.normal(0, 0.2, N_EXAMPLES), 0, 1))
            for k in range(N_SUBS)]


@pytest.mark.parametrize("grouping", ["leader", "adjacent"])
def test_rank_groups(benchmark, grouping):
    entries = _entries()
    res = benchmark.pedantic(rank_groups, args=(entries,), kwargs={"higher_is_better": True, "grouping": grouping},
                             rounds=3, iterations=1)
    benchmark.extra_info.update(n_tests=N_SUBS - 1, groups=len({r.group for r in res}),
                                seconds_per_test=benchmark.stats.stats.mean / (N_SUBS - 1))
