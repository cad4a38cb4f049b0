"""Linear CKA between two sets of representations of the same tokens (Kornblith et al., 2019). Pure functions.

For X (n, d1) and Y (n, d2), rows the same n tokens, columns centred (Xc = X − mean over tokens):

    CKA(X, Y) = ‖Yc^T Xc‖_F² / (‖Xc^T Xc‖_F ‖Yc^T Yc‖_F)
              = <Kc, Lc>_F / (‖Kc‖_F ‖Lc‖_F),    Kc = Xc Xc^T, Lc = Yc Yc^T  (n, n)

The Gram form compares every layer of one model with every layer of another at the cost of one
(n, n) matrix per layer, however wide the layers are: ``cka_matrix``. CKA is invariant to
orthogonal transforms and isotropic scaling of either side, so residual streams of different
widths (a width-pruned student) compare directly. Computed in float64.
"""

from __future__ import annotations

import torch


def centered_gram(x: torch.Tensor) -> torch.Tensor:
    """(n, d) representations -> (n, n) Gram matrix of the token-centred rows, float64."""
    x = x.double()
    xc = x - x.mean(dim=0, keepdim=True)
    return xc @ xc.T


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of (n, d1) and (n, d2) in the feature form (float64)."""
    xc = x.double() - x.double().mean(dim=0, keepdim=True)
    yc = y.double() - y.double().mean(dim=0, keepdim=True)
    cross = (yc.T @ xc).square().sum()
    return float(cross / ((xc.T @ xc).norm() * (yc.T @ yc).norm()))


def cka_matrix(grams_a: torch.Tensor, grams_b: torch.Tensor) -> torch.Tensor:
    """(La, n, n) and (Lb, n, n) centred Gram matrices -> (La, Lb) linear CKA of every pair, float64."""
    a = grams_a.double().flatten(1)  # (La, n*n)
    b = grams_b.double().flatten(1)
    hsic = a @ b.T  # <Kc_i, Lc_j>_F
    return hsic / (a.norm(dim=1)[:, None] * b.norm(dim=1)[None, :]).clamp_min(1e-300)


def matched_layers(teacher_layers: int, kept: list[int] | None) -> list[tuple[int, int]]:
    """(student boundary, teacher boundary) pairs at matched depth.

    Boundary j is the residual stream after j layers (j = 0: the embeddings). A student that kept
    teacher layers ``kept`` (ascending; None: all of them, a width-only student) has, after its j-th
    layer, applied teacher layer kept[j-1] last: it is matched to the teacher's boundary kept[j-1] + 1.
    """
    kept = list(range(teacher_layers)) if kept is None else list(kept)
    if any(not 0 <= k < teacher_layers for k in kept) or kept != sorted(set(kept)):
        raise ValueError(f"kept layers {kept} are not ascending teacher layers 0..{teacher_layers - 1}")
    return [(0, 0)] + [(j + 1, k + 1) for j, k in enumerate(kept)]
