"""Linear CKA against the HSIC formula with an explicit centering matrix in float64, and matched depths."""

import pytest
import torch

from analysis.evaluation.similarity import centered_gram, cka_matrix, linear_cka, matched_layers


def hsic_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), HSIC(K, L) = tr(K H L H) / (n-1)^2, H = I - 11^T / n."""
    x, y = x.double(), y.double()
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - torch.ones(n, n, dtype=torch.float64) / n
    k, lk = x @ x.T, y @ y.T

    def hsic(a, b):
        return torch.trace(a @ h @ b @ h) / (n - 1) ** 2
    return float(hsic(k, lk) / (hsic(k, k) * hsic(lk, lk)).sqrt())


def test_linear_cka_equals_the_hsic_formula_and_its_invariances():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 12, generator=g)
    y = x[:, :7] @ torch.randn(7, 9, generator=g) + 0.5 * torch.randn(40, 9, generator=g)
    assert linear_cka(x, y) == pytest.approx(hsic_cka(x, y), rel=1e-10)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    assert linear_cka(x.double() @ q * 3.0 + 5.0, y) == pytest.approx(linear_cka(x, y), rel=1e-9)  # rotation, scale, shift
    assert linear_cka(x, x) == pytest.approx(1.0, rel=1e-12)
    assert linear_cka(x, torch.randn(40, 30, generator=g)) < 0.8


def test_cka_matrix_equals_every_pairwise_cka():
    g = torch.Generator().manual_seed(1)
    a = [torch.randn(25, 6, generator=g) for _ in range(3)]
    b = [a[0] @ torch.randn(6, 4, generator=g), torch.randn(25, 5, generator=g)]
    got = cka_matrix(torch.stack([centered_gram(x) for x in a]), torch.stack([centered_gram(y) for y in b]))
    want = torch.tensor([[hsic_cka(x, y) for y in b] for x in a], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_matched_layers():
    assert matched_layers(3, None) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert matched_layers(6, [0, 2, 5]) == [(0, 0), (1, 1), (2, 3), (3, 6)]  # after kept layer k: teacher boundary k+1
    with pytest.raises(ValueError):
        matched_layers(4, [2, 1])
