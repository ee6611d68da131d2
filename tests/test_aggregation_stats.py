import numpy as np
import pytest

from harness.core.aggregation import aggregate
from harness.metrics.stats import bootstrap_ci


def test_absmax_keeps_sign_of_largest_magnitude():
    # tokens: [CLS] un ##believ ##able film [SEP]
    scores = np.array([0.0, 0.2, -0.7, 0.5, 0.3, 0.0])
    wids = [None, 0, 0, 0, 1, None]
    np.testing.assert_allclose(aggregate(scores, wids, 2, "absmax"), [-0.7, 0.3])
    np.testing.assert_allclose(aggregate(scores, wids, 2, "sum"), [0.0, 0.3], atol=1e-12)
    np.testing.assert_allclose(aggregate(scores, wids, 2, "mean"), [0.0, 0.3], atol=1e-12)


def test_aggregation_errors():
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(np.zeros(3), [None, 0, None], 1, "max")
    with pytest.raises(ValueError, match=r"words \[1\] have no tokens"):
        aggregate(np.zeros(3), [None, 0, None], 2)


def test_bootstrap_ci():
    x = np.r_[np.zeros(50), np.ones(50)]
    mean, lo, hi = bootstrap_ci(x)
    assert mean == 0.5 and lo < 0.5 < hi
    # the percentile-bootstrap interval of a mean of 100 Bernoulli(0.5) is about +-0.1
    assert 0.38 < lo < 0.45 and 0.55 < hi < 0.62
    assert bootstrap_ci(x) == (mean, lo, hi)        # deterministic
    assert bootstrap_ci(np.full(10, 0.3)) == pytest.approx((0.3, 0.3, 0.3))
    with pytest.raises(ValueError, match="not finite"):
        bootstrap_ci([1.0, np.nan])
    with pytest.raises(ValueError, match="zero examples"):
        bootstrap_ci([])
