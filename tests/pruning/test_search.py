"""Architecture search: the paper's Table 19 list, exact counts, budgets, scaled spaces, ranking on a tiny model."""

from __future__ import annotations

import pytest
import torch

from analysis.core.errors import MinitronError
from analysis.models.adapter import DecoderAdapter
from analysis.models.paper import SEARCH_GRIDS, TABLE19_8B
from analysis.models.registry import get
from analysis.pruning.plan import Importance
from analysis.pruning.search import (
    SearchSpace,
    enumerate_candidates,
    paper_space,
    parse_budget,
    rank,
    resolve_space,
    scaled_space,
    space_for,
)
from tests.helpers import tiny_model

TEACHER = get("15B").arch

# NeurIPS Table 19: the 15 candidates of the 8B search, (layers, heads, MLP factor, hidden), typed in
# here independently of analysis.models.paper.
TABLE19 = {
    (32, 48, 2.5, 4608), (30, 48, 4, 4096), (29, 32, 2.5, 5120), (32, 32, 3, 4608), (29, 48, 3, 4608),
    (29, 32, 3.5, 4608), (31, 48, 4, 4096), (30, 32, 2.5, 5120), (30, 48, 3, 4608), (30, 32, 3.5, 4608),
    (32, 48, 4, 4096), (31, 32, 2.5, 5120), (31, 48, 3, 4608), (31, 32, 3.5, 4608), (32, 32, 2.5, 5120),
}


def _keys(found):
    return {c.key for c in found}


def test_8b_search_lists_exactly_table_19():
    found = enumerate_candidates(TEACHER, resolve_space(TEACHER, "8B"))
    assert _keys(found) == TABLE19 == set(TABLE19_8B) and len(found) == 15
    assert (32, 48, 4, 4096) in _keys(found)  # Minitron-8B itself
    params = sorted(c.params for c in found)
    assert round(params[0] / 1e9, 3) == 7.871 and round(params[-1] / 1e9, 3) == 8.494


def test_grid_reads_4680_as_4608():
    assert 4608 in SEARCH_GRIDS["8B"].hidden and 4680 not in SEARCH_GRIDS["8B"].hidden


def test_the_papers_5_percent_text_is_not_its_table():
    """|params - 8B| <= 5% gives 18: three more below 7.87B and the table's 8.494B one left out."""
    found = _keys(enumerate_candidates(TEACHER, paper_space("8B"), tolerance=0.05))
    assert len(found) == 18
    assert found - TABLE19 == {(29, 48, 4, 4096), (31, 48, 2.5, 4608), (32, 32, 4, 4096), (32, 48, 3.5, 4096),
                               (31, 32, 3, 4608)}
    assert TABLE19 - found == {(31, 32, 3.5, 4608), (32, 32, 2.5, 5120)}


def test_4b_candidates_count_matches_paper():
    found = enumerate_candidates(TEACHER, resolve_space(TEACHER, "4B"))
    assert len(found) == 18
    assert (32, 24, 3, 3072) in _keys(found)  # Minitron-4B itself


def test_counts_are_exact_independent_formula():
    # Independent count: embeddings in/out + per layer q,o,k,v, up/down, two LayerNorm1P (w+b), final norm.
    for c in enumerate_candidates(TEACHER, resolve_space(TEACHER, "8B")):
        L, H, D, F = c.arch.layers, c.arch.heads, c.arch.hidden, c.arch.mlp
        assert F == c.mlp_factor * D
        assert c.params == 2 * 256000 * D + L * (2 * D * H * 128 + 2 * D * 8 * 128 + 2 * D * F + 4 * D) + 2 * D


def test_scaling_to_nemotron_15b_is_the_identity():
    assert scaled_space(paper_space("8B"), TEACHER) == paper_space("8B")


def test_scaled_space_for_the_embedded_default():
    smol = get("smollm2-135m").arch  # 30 layers, hidden 576, 9 heads in 3 groups, MLP 1536
    space = resolve_space(smol, "8B")
    assert space.layers == (27, 28, 29, 30)  # round(30 x {29..32}/32)
    assert space.heads == (6, 9)  # 9 x {32, 48}/48, multiples of the 3 kv heads
    assert space.hidden == (384, 432, 480, 528, 576)  # 576 x {4096..6144}/6144
    share = smol.params()["total"] / TEACHER.params()["total"]
    assert space.budget == pytest.approx(8e9 * share) and space.window == pytest.approx((7.87e9 * share, 8.5e9 * share))
    found = enumerate_candidates(smol, space)
    assert found and all(space.window[0] <= c.params <= space.window[1] for c in found)
    for c in found:  # MLP factor relative to the teacher's own MLP/hidden ratio (1536/576 = 2.667 for "4")
        assert c.arch.mlp == round(c.mlp_factor / 4 * 1536 / 576 * c.arch.hidden)


@pytest.mark.parametrize("text, value", [("8B", 8e9), ("4b", 4e9), ("7.5e9", 7.5e9), ("750M", 7.5e8)])
def test_parse_budget(text, value):
    assert parse_budget(text) == value


def test_parse_budget_rejects_nonsense():
    with pytest.raises(MinitronError):
        parse_budget("big")


def test_space_for_budget():
    assert space_for(8e9).name == "8B" and space_for(4.2e9).name == "4B"
    numeric = resolve_space(TEACHER, "7.5e9")
    assert numeric.name == "8B" and numeric.budget == 7.5e9 and numeric.window is None


def test_rank_on_tiny_model():
    model = tiny_model("llama")
    arch = DecoderAdapter(model).arch
    space = SearchSpace(name="tiny", layers=(3, 4), heads=(2, 4), mlp_factors=(0.5, 1.0), mlp_ratio=1.0, hidden=(16, 32),
                        budget=arch.params()["total"])
    cands = enumerate_candidates(arch, space, tolerance=0.3)
    assert cands
    g = torch.Generator().manual_seed(0)
    imp = Importance(channels=torch.rand(32, generator=g), heads=torch.rand(4, 4, generator=g),
                     neurons=torch.rand(4, 40, generator=g), depth=torch.rand(4, generator=g))
    losses = rank(model, cands, imp, torch.randint(0, 89, (2, 8), generator=g))
    assert len(losses) == len(cands) and all(torch.isfinite(torch.tensor(losses)))
