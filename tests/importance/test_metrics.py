"""Pure metrics against independent references: scipy, the no-ties formula, identities."""

import pytest
import torch

from analysis.importance.metrics import block_importance, bootstrap_interval, kendall, ranks, spearman


def test_spearman_reference():
    from scipy.stats import spearmanr

    a, b = torch.randn(20), torch.randn(20)
    b[3] = b[4]  # a tie
    assert spearman(a, b) == pytest.approx(spearmanr(a.numpy(), b.numpy()).statistic, rel=1e-9)


def test_spearman_matches_a_naive_formula():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, generator=g), torch.randn(50, generator=g)
    d = ranks(a) - ranks(b)
    naive = 1 - 6 * float((d**2).sum()) / (50 * (50**2 - 1))  # valid without ties
    assert spearman(a, b) == pytest.approx(naive, abs=1e-12)
    assert spearman(a, 2 * a + 1) == pytest.approx(1.0)
    assert ranks(torch.tensor([3.0, 1.0, 3.0])).tolist() == [1.5, 0.0, 1.5]


def test_block_importance_is_one_minus_mean_cosine():
    assert block_importance(torch.tensor([1.0, 0.25, -0.5])).tolist() == [0.0, 0.75, 1.5]


def test_kendall_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        a, b = torch.randint(0, 5, (12,), generator=g).double(), torch.randint(0, 6, (12,), generator=g).double()
        assert kendall(a, b) == pytest.approx(stats.kendalltau(a.numpy(), b.numpy()).statistic, abs=1e-12)
    assert kendall(torch.arange(5.0), -torch.arange(5.0)) == -1.0


def test_bootstrap_interval_of_a_mean_covers_the_normal_interval():
    x = torch.randn(400, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.3
    lo, hi = bootstrap_interval(lambda i: float(x[i].mean()), len(x), resamples=1000)
    se = float(x.std() / len(x) ** 0.5)
    assert lo == pytest.approx(float(x.mean()) - 1.96 * se, abs=0.25 * se)
    assert hi == pytest.approx(float(x.mean()) + 1.96 * se, abs=0.25 * se)
