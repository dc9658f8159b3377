"""Spectral filters: the exact endpoints, reference counts, and the inequality behind the bound."""

import numpy as np
import pytest

from softeq.filters import FILTERS, filter_weights
from softeq.groups import grid_generators
from softeq.spectral import constraint_svd


def _c4_sigma(k):
    (d,) = grid_generators("C4", k)
    return constraint_svd([d.T]).sigma


@pytest.mark.parametrize(("k", "expected"), [(16, 216), (32, 869)])
def test_rank_reproduces_reference_counts(k, expected):
    result = filter_weights(_c4_sigma(k), 0.8, "rank")
    assert result.kept == expected
    assert filter_weights(_c4_sigma(k), 0.8, "rank", hard_mask=True).kept == expected


@pytest.mark.parametrize("name", FILTERS)
def test_filter_inequality_and_endpoints(name):
    rng = np.random.default_rng(1)
    sigma = np.sort(np.concatenate([np.zeros(5), rng.uniform(0.01, 3.0, 40)]))
    for b in np.linspace(0, 1, 11):
        result = filter_weights(sigma, b, name)
        assert np.all(result.weights * sigma <= result.b_eff * sigma[-1] + 1e-5)
        assert np.all(result.weights[:5] == 1.0)  # the null space is always kept
    np.testing.assert_array_equal(filter_weights(sigma, 1.0, name).weights, 1.0)
    np.testing.assert_array_equal(filter_weights(sigma, 0.0, name).weights[5:], 0.0)


def test_bad_arguments_raise():
    sigma = np.array([0.0, 1.0])
    with pytest.raises(ValueError, match="softness"):
        filter_weights(sigma, 1.5)
    with pytest.raises(ValueError, match="unknown filter"):
        filter_weights(sigma, 0.5, "soft")
    with pytest.raises(ValueError, match="hard_mask"):
        filter_weights(sigma, 0.5, "shrink", hard_mask=True)
    with pytest.raises(ValueError, match="ascending"):
        filter_weights(sigma[::-1], 0.5)
