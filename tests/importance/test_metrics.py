"""Pure metrics against independent references: scipy, the no-ties formula, identities."""

import pytest
import torch

from analysis.importance.metrics import block_importance, ranks, spearman


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
