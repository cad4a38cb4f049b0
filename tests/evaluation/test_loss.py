"""Held-out loss and KL against independent references: HF's own loss, float64 loops over the vocabulary."""

import math

import pytest
import torch

from analysis.evaluation.loss import Heldout, clm_loss, forward_kl, heldout, heldout_pair
from tests.helpers import random_ids, tiny_model


# --- losses -------------------------------------------------------------------------------------
def naive_kl(s, t, mask, temperature):
    """float64 loops over tokens and vocabulary."""
    total, n = 0.0, 0
    s, t = s.double().reshape(-1, s.shape[-1]) / temperature, t.double().reshape(-1, t.shape[-1]) / temperature
    for row in range(s.shape[0]):
        if mask is not None and not mask.reshape(-1)[row]:
            continue
        zs, zt = math.log(sum(math.exp(x) for x in s[row].tolist())), math.log(sum(math.exp(x) for x in t[row].tolist()))
        for v in range(s.shape[1]):
            lt, ls = t[row, v].item() - zt, s[row, v].item() - zs
            total += math.exp(lt) * (lt - ls)
        n += 1
    return total / n * temperature**2


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_forward_kl_matches_naive_float64_loop(temperature):
    g = torch.Generator().manual_seed(0)
    s, t = 3 * torch.randn(2, 5, 13, generator=g), 3 * torch.randn(2, 5, 13, generator=g)
    mask = torch.rand(2, 5, generator=g) > 0.3
    for m in (None, mask):
        got = forward_kl(s, t, m, temperature=temperature, chunk=3).item()
        assert got == pytest.approx(naive_kl(s, t, m, temperature), abs=1e-6)


def test_forward_kl_zero_for_identical_positive_otherwise():
    s = torch.randn(3, 7, 17)
    assert forward_kl(s, s.clone()).item() == pytest.approx(0.0, abs=1e-7)
    assert forward_kl(s, s + 5.0).item() == pytest.approx(0.0, abs=1e-6)  # softmax is shift-invariant
    assert forward_kl(s, s.flip(-1)).item() > 1e-3


def test_forward_kl_chunked_gradient_equals_unchunked():
    t = torch.randn(2, 6, 11)
    s1 = torch.randn(2, 6, 11, requires_grad=True)
    s2 = s1.detach().clone().requires_grad_(True)
    a, b = forward_kl(s1, t, chunk=1), forward_kl(s2, t, chunk=1000)
    a.backward()
    b.backward()
    assert a.item() == pytest.approx(b.item(), abs=1e-6)
    torch.testing.assert_close(s1.grad, s2.grad, atol=1e-7, rtol=1e-5)


def test_clm_loss_matches_naive():
    logits, ids = torch.randn(2, 5, 9), torch.randint(0, 9, (2, 5))
    logp = torch.log_softmax(logits.double(), -1)
    want = -sum(logp[b, t, ids[b, t + 1]].item() for b in range(2) for t in range(4)) / 8
    assert clm_loss(logits, ids).item() == pytest.approx(want, abs=1e-6)


# --- held-out evaluation ----------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["nemotron", "llama"])
def test_heldout_equals_hf_loss_over_windows(family):
    """Sum over windows of HF's own mean next-token loss x (T-1): independent of our chunked LM head."""
    model = tiny_model(family)
    ids = random_ids(model.config.vocab_size, 5, t=12)
    with torch.no_grad():
        want = sum(model(row[None], labels=row[None]).loss.double().item() * 11 for row in ids)
    got = heldout(model, ids, batch_size=2)
    assert got.tokens == 5 * 11 and got.nll == pytest.approx(want, rel=1e-5)
    assert got.perplexity == pytest.approx(math.exp(want / 55), rel=1e-5)


def test_heldout_refuses_a_loss_of_nothing():
    with pytest.raises(ValueError, match="no tokens"):
        _ = Heldout(nll=0.0, tokens=0).loss


def test_heldout_pair_matches_full_logit_references():
    """Chunked KL over all T positions equals forward_kl on full logits, which equals the float64 loop."""
    teacher, student = tiny_model("llama"), tiny_model("llama", seed=5)
    ids = random_ids(teacher.config.vocab_size, 3, t=7)
    with torch.no_grad():
        s, t = student(ids).logits, teacher(ids).logits
    got = heldout_pair(student, teacher, ids, batch_size=2)
    assert got["kl"] == pytest.approx(forward_kl(s, t).item(), rel=1e-5)
    assert got["kl"] == pytest.approx(naive_kl(s, t, None, 1.0), rel=1e-5)
    assert got["loss"] == pytest.approx(clm_loss(s, ids).item(), rel=1e-5)
    assert got["teacher_loss"] == pytest.approx(clm_loss(t, ids).item(), rel=1e-5)
    assert got["tokens"] == 3 * 6 and heldout_pair(teacher, teacher, ids)["kl"] == pytest.approx(0.0, abs=1e-6)


def test_token_pair_stats_match_per_token_float64_loops():
    """Per-position KL, NLL and top-1 against loops over positions on full float64 logits; sums against head_*."""
    from analysis.evaluation.loss import head_kl, head_nll, token_pair_stats
    from analysis.models.adapter import DecoderAdapter

    teacher, student = tiny_model("llama"), tiny_model("llama", seed=5)
    ids = random_ids(teacher.config.vocab_size, 3, t=7)
    s_ad, t_ad = DecoderAdapter(student), DecoderAdapter(teacher)
    with torch.no_grad():
        s_normed = s_ad.backbone(input_ids=ids).last_hidden_state
        t_normed = t_ad.backbone(input_ids=ids).last_hidden_state
        s_logits, t_logits = student(ids).logits.double(), teacher(ids).logits.double()
    got = token_pair_stats(s_ad, s_normed, t_ad, t_normed, ids, max_logits=5 * teacher.config.vocab_size)  # chunks of 5
    for b in range(3):
        for p in range(7):
            ls, lt = torch.log_softmax(s_logits[b, p], -1), torch.log_softmax(t_logits[b, p], -1)
            kl = sum(math.exp(lt[v].item()) * (lt[v].item() - ls[v].item()) for v in range(lt.numel()))  # float
            assert got["kl"][b, p].item() == pytest.approx(kl, abs=1e-5)
            assert bool(got["agree"][b, p]) == (int(ls.argmax()) == int(lt.argmax()))
            if p < 6:
                assert got["s_nll"][b, p].item() == pytest.approx(-ls[ids[b, p + 1]].item(), abs=1e-5)
                assert got["t_nll"][b, p].item() == pytest.approx(-lt[ids[b, p + 1]].item(), abs=1e-5)
    assert got["s_nll"].double().sum().item() == pytest.approx(head_nll(s_ad, s_normed, ids).item(), rel=1e-6)
    assert got["kl"].double().sum().item() == pytest.approx(head_kl(s_ad, s_normed, t_ad, t_normed).item(), rel=1e-5)
