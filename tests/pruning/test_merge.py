"""Head residual merging (paper §2.3) against a hand-written reference: explicit loops over heads on the state dict."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from analysis.models.adapter import DecoderAdapter
from analysis.pruning.merge import merge_pairs
from analysis.pruning.plan import Importance, PruneTarget
from analysis.pruning.surgery import prune_model
from tests.helpers import FAMILIES, tiny_model

HD = 8  # head_dim of the tiny models


def _importance(arch, seed: int = 5) -> Importance:
    g = torch.Generator().manual_seed(seed)
    heads = torch.rand(arch.layers, arch.heads, generator=g)
    heads[0, :2] = 0.5  # a tie inside a group: the lower index ranks first, as pruning breaks ties
    return Importance(channels=torch.rand(arch.hidden, generator=g), heads=heads,
                      neurons=torch.rand(arch.layers, arch.mlp, generator=g), depth=torch.rand(arch.layers, generator=g))


def _reference_q(sd: dict, layer: int, scores: torch.Tensor, groups: int, keep: int) -> torch.Tensor:
    """q_proj of ``layer`` after merging, written from the paper's formula with plain loops.

    In each group, rank heads 1..L by score (ties: lower index first); kept head i (1-based, i <= K) takes
    head_i + (head_i - head_j) with j = 2K - i + 1 whenever j names a pruned head (K < j <= L).
    """
    w = sd[f"model.layers.{layer}.self_attn.q_proj.weight"]
    out = w.clone()
    per_group = scores.shape[1] // groups
    for g in range(groups):
        members = list(range(g * per_group, (g + 1) * per_group))
        ranked = sorted(members, key=lambda h: (-float(scores[layer, h]), h))
        for i in range(1, keep + 1):
            j = 2 * keep - i + 1
            if keep < j <= per_group:
                a, b = ranked[i - 1], ranked[j - 1]
                for row in range(HD):
                    out[a * HD + row] = w[a * HD + row] + (w[a * HD + row] - w[b * HD + row])
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("heads, keep_total", [(4, 2), (8, 2), (8, 4), (8, 6)])  # r=2,4: K=1 (r-K > K), 2, 3
def test_merge_matches_hand_written_reference(family, heads, keep_total):
    model = tiny_model(family, heads=heads, kv_heads=2)
    arch = DecoderAdapter(model).arch
    imp = _importance(arch)
    pruned = prune_model(model, PruneTarget(hidden=24, heads=keep_total, layers=3), imp)
    sd, got = model.state_dict(), pruned.model.state_dict()
    keep = keep_total // 2
    for j, i in enumerate(pruned.plan.layers):
        rows = torch.cat([torch.arange(h * HD, (h + 1) * HD) for h in pruned.plan.heads[i].tolist()])
        want = _reference_q(sd, i, imp.heads, 2, keep).index_select(0, rows).index_select(1, pruned.plan.channels)
        torch.testing.assert_close(got[f"model.layers.{j}.self_attn.q_proj.weight"], want, rtol=0, atol=0)
        for name in ("k_proj", "v_proj"):  # shared by the group: sliced, never merged
            want_kv = sd[f"model.layers.{i}.self_attn.{name}.weight"].index_select(1, pruned.plan.channels)
            assert torch.equal(got[f"model.layers.{j}.self_attn.{name}.weight"], want_kv)
        want_o = sd[f"model.layers.{i}.self_attn.o_proj.weight"].index_select(0, pruned.plan.channels).index_select(1, rows)
        assert torch.equal(got[f"model.layers.{j}.self_attn.o_proj.weight"], want_o)
    pairs = pruned.plan.head_merge[pruned.plan.layers[0]]
    assert len(pairs) == 2 * min(keep, heads // 2 - keep)  # every pruned head merged once, at most one per kept head


def test_merge_pairs_mirror_around_the_cut():
    order = torch.tensor([[3, 1, 0, 2, 5, 4]])  # one group of 6, most important first
    assert merge_pairs(order, 4).tolist() == [[2, 5], [0, 4]]  # i=4 <- 5th, i=3 <- 6th
    assert merge_pairs(order, 2).tolist() == [[1, 0], [3, 2]]  # i=2 <- 3rd, i=1 <- 4th; 5th, 6th dropped
    assert merge_pairs(order, 6).tolist() == []


@pytest.mark.parametrize("family", FAMILIES)
def test_merge_off_without_head_pruning_or_scores(family):
    model = tiny_model(family)
    arch = DecoderAdapter(model).arch
    x = torch.randint(0, arch.vocab, (1, 7), generator=torch.Generator().manual_seed(0))
    same = prune_model(model, PruneTarget(hidden=24), _importance(arch))
    assert same.plan.head_merge == {} and same.plan.merge_note == "no heads pruned"
    unscored = prune_model(model, PruneTarget(heads=2), Importance())
    assert unscored.plan.head_merge == {} and "no head scores" in unscored.plan.merge_note
    off = prune_model(model, PruneTarget(heads=2), _importance(arch), head_merge=False)
    on = prune_model(model, PruneTarget(heads=2), _importance(arch))
    assert off.plan.merge_note == "--no-head-merge" and on.plan.merge_note is None
    with torch.no_grad():
        assert not torch.equal(off.model(x).logits, on.model(x).logits)  # merging changes the function


def test_merged_model_saves_and_reloads(tmp_path):
    model = tiny_model("nemotron", heads=8, kv_heads=2)
    pruned = prune_model(model, PruneTarget(heads=4), _importance(DecoderAdapter(model).arch)).model
    pruned.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    x = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, pruned(x).logits)
