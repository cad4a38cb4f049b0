"""Ranking stability: per-sample rows reproduce the streamed scores, reweighting equals explicit resampling,
kept sets equal pruning's, overlaps equal set arithmetic and scipy, and analyze --bootstrap resumes exactly."""

from __future__ import annotations

import pytest
import torch

from analysis.data import DataConfig
from analysis.importance.bootstrap import bootstrap, jaccard, kept, scores, subset_weights
from analysis.importance.collect import Collector
from analysis.importance.metrics import spearman_rows
from analysis.importance.pipeline import AnalysisConfig, RunInterrupted, run_analysis
from analysis.importance.results import load_run
from analysis.models.adapter import DecoderAdapter
from analysis.models.loading import LoadConfig
from analysis.pruning.ranking import heads_kept, rank_channels, rank_neurons
from tests.helpers import random_ids, run_cli, tiny_model


@pytest.fixture(scope="module")
def collected():
    """A collector with per-sample rows after 7 samples in batches of 3, 3, 1."""
    model = tiny_model("llama")
    ad = DecoderAdapter(model)
    c = Collector(ad, block_sizes=(1,), per_sample=True)
    ids = random_ids(model.config.vocab_size, 7, t=10)
    with c.collecting(), torch.no_grad():
        for batch in ids.split(3):
            c.begin(*batch.shape)
            ad.backbone(input_ids=batch)
            c.fold()
    return c, ad


def test_rows_give_back_the_streamed_default_scores(collected):
    c, _ = collected
    rows, streamed = c.sample_rows(), c.finalize()
    assert rows["heads"].shape == (7, 4, 4) and rows["neurons"].shape == (7, 4, 40) and rows["channels"].shape == (7, 4, 2, 32)
    ones = torch.ones(1, 7, dtype=torch.float64)
    for axis in ("heads", "neurons", "channels"):
        torch.testing.assert_close(scores(rows[axis], ones, axis)[0].float(), streamed[f"{axis}.l2_mean"], rtol=1e-5,
                                   atol=1e-6)


def test_reweighting_equals_explicit_resampling(collected):
    rows = collected[0].sample_rows()
    idx = torch.tensor([0, 0, 3, 6, 6, 6, 2])
    counts = torch.bincount(idx, minlength=7).double()[None]
    for axis in ("heads", "neurons", "channels"):
        explicit = scores(rows[axis][idx], torch.ones(1, 7, dtype=torch.float64), axis)
        torch.testing.assert_close(scores(rows[axis], counts, axis), explicit)
    w = subset_weights(7, 3, 5, seed=1)
    assert w.sum(1).eq(3).all() and ((w == 0) | (w == 1)).all()


def test_kept_sets_are_prunings(collected):
    c, ad = collected
    s = {a: scores(v, torch.ones(1, 7, dtype=torch.float64), a) for a, v in c.sample_rows().items()}
    ch = torch.zeros(32, dtype=torch.bool)
    ch[rank_channels(s["channels"][0], 20)] = True
    assert torch.equal(kept(s["channels"], "channels", 20)[0], ch)
    ne = torch.zeros(4, 40, dtype=torch.bool).scatter_(1, rank_neurons(s["neurons"][0], 25), True)
    assert torch.equal(kept(s["neurons"], "neurons", 25)[0], ne)
    assert torch.equal(kept(s["heads"], "heads", 1, ad.num_kv_heads)[0], heads_kept(s["heads"][0], ad.num_kv_heads, 1))
    tied = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # ties go to the lower index, as in pruning
    assert kept(tied, "channels", 2).tolist() == [[True, True, False, False]]


def test_overlaps_equal_set_arithmetic_and_scipy():
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 30, generator=g) > 0.5, torch.rand(5, 30, generator=g) > 0.4
    for r in range(5):
        sa, sb = set(a[r].nonzero().flatten().tolist()), set(b[r].nonzero().flatten().tolist())
        assert float(jaccard(a, b)[r]) == pytest.approx(len(sa & sb) / len(sa | sb))
    x, y = torch.randint(0, 6, (4, 25), generator=g).float(), torch.rand(4, 25, generator=g)  # ties in x
    got = spearman_rows(x, y)
    for r in range(4):
        assert float(got[r]) == pytest.approx(spearmanr(x[r].numpy(), y[r].numpy()).statistic, abs=1e-12)


def test_bootstrap_report(collected):
    c, ad = collected
    b = bootstrap(c.sample_rows(), ad.num_kv_heads, iters=30, seed=0)
    assert b["samples"] == 7 and b["iters"] == 30
    assert b["axes"]["heads"]["kept"]["8B"]["note"] == "all units kept"  # the 8B ratio keeps every head
    for axis in ("channels", "neurons"):
        for target in ("8B", "4B"):
            j = b["axes"][axis]["kept"][target]["jaccard"]
            assert 0 < j["lo"] <= j["mean"] <= j["hi"] <= 1
            curve = b["curve"][axis][target]
            assert [p["n"] for p in curve] == [1, 2, 4, 7] and curve[-1]["mean"] == 1.0
    assert b == bootstrap(c.sample_rows(), ad.num_kv_heads, iters=30, seed=0)  # seeded


def _cfg(model_dir, boot=0, **kw):
    return AnalysisConfig(load=LoadConfig(model=str(model_dir), device="cpu"), batch_size=2, block_sizes=(1,),
                          data=DataConfig(seq_len=24, calib_samples=6, eval_samples=2, seed=1), bootstrap=boot, **kw)


def test_analyze_bootstrap_resumes_to_the_same_numbers(tiny_dirs, tmp_path):
    d = tiny_dirs["llama"][0]
    plain = load_run(run_analysis(_cfg(d), out=tmp_path / "plain"))
    assert "bootstrap" not in plain.metrics  # the default output is unchanged
    full = load_run(run_analysis(_cfg(d, boot=25), out=tmp_path / "full"))
    with pytest.raises(RunInterrupted):
        run_analysis(_cfg(d, boot=25), out=tmp_path / "resumed", stop_after=2)
    resumed = load_run(run_analysis(_cfg(d, boot=25), out=tmp_path / "resumed", resume=True))
    strip = {"seconds"}
    assert {k: v for k, v in full.metrics["bootstrap"].items() if k not in strip} == \
        {k: v for k, v in resumed.metrics["bootstrap"].items() if k not in strip}
    assert full.metrics["run_id"] != plain.metrics["run_id"]
    torch.testing.assert_close(full.tensors["channels"], plain.tensors["channels"])


@pytest.mark.parametrize("args", [["--bootstrap", "-1"], ["--bootstrap", "5", "--samples", "1"]])
def test_bad_bootstrap_is_a_one_line_error(tmp_path, args):
    r = run_cli("analyze", *args, "--out", tmp_path / "o")
    assert r.code == 2 and "--bootstrap" in r.err and len(r.error_lines) == 1 and not (tmp_path / "o").exists()
