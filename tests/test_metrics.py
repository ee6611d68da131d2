"""Ground-truth metrics against hand-computed values (paper 001 sec. 2.2.3.1)."""

import numpy as np
import pytest

from harness.metrics.base import get_metric, gt_overlap_one, mean_rank_pct_one
from harness.protocols import Example, MetricInputs


def test_gt_overlap_single_gold():
    # planted word at index 3 has the top score -> hit
    assert gt_overlap_one(np.array([0.1, -0.5, 0.2, 0.9]), [3]) == 1.0
    # second-best -> miss
    assert gt_overlap_one(np.array([0.1, 0.95, 0.2, 0.9]), [3]) == 0.0
    # negative top score still ranks by signed value: -0.1 > -0.2
    assert gt_overlap_one(np.array([-0.2, -0.1]), [1]) == 1.0


def test_gt_overlap_ties_count_against_the_explainer():
    assert gt_overlap_one(np.zeros(5), [2]) == 0.0
    assert gt_overlap_one(np.array([0.5, 0.5, 0.1]), [0]) == 0.0


def test_gt_overlap_multiple_gold_words():
    s = np.array([0.9, 0.1, 0.8, 0.3])
    assert gt_overlap_one(s, [0, 2]) == 1.0   # top-2 = {0, 2}
    assert gt_overlap_one(s, [0, 3]) == 0.0   # top-2 = {0, 2} != {0, 3}


def test_mean_rank_pct_hand_values():
    s = np.array([0.4, 0.1, 0.9, 0.3, 0.2])   # ranking: 2, 0, 3, 4, 1
    assert mean_rank_pct_one(s, [2]) == pytest.approx(1 / 5)
    assert mean_rank_pct_one(s, [3]) == pytest.approx(3 / 5)
    assert mean_rank_pct_one(s, [1]) == pytest.approx(5 / 5)
    # two gold words: need the top 4 to contain both 0 and 4
    assert mean_rank_pct_one(s, [0, 4]) == pytest.approx(4 / 5)
    # ties with the gold word are ranked above it
    assert mean_rank_pct_one(np.array([1.0, 1.0, 1.0, 0.0]), [1]) == pytest.approx(3 / 4)


def test_random_maps_have_expected_mean_rank():
    rng = np.random.default_rng(0)
    n = 20
    vals = [mean_rank_pct_one(rng.standard_normal(n), [int(rng.integers(n))]) for _ in range(20000)]
    assert np.mean(vals) == pytest.approx((n + 1) / (2 * n), abs=0.01)


def test_metric_objects_and_validation():
    ex = [Example("a", (("x", "y", "z"),)), Example("b", (("u", "v"),))]
    inputs = MetricInputs(examples=ex, word_scores=[np.array([0.0, 1.0, 0.5]), np.array([2.0, 1.0])], gold=[[1], [1]])
    gt, mr = get_metric("gt_overlap"), get_metric("mean_rank_pct")
    assert gt.higher_is_better and not mr.higher_is_better
    np.testing.assert_array_equal(gt.per_example(inputs), [1.0, 0.0])
    np.testing.assert_allclose(mr.per_example(inputs), [1 / 3, 1.0])
    with pytest.raises(ValueError, match="out of range"):
        gt_overlap_one(np.array([1.0, 2.0]), [2])
    with pytest.raises(ValueError, match="at least one gold"):
        mean_rank_pct_one(np.array([1.0, 2.0]), [])
