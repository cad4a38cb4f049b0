"""Perplexity protocols against their references: lm-evaluation-harness itself, and Hugging Face's recipe via transformers' loss."""

from __future__ import annotations

import math

import pytest
import torch

from analysis.data import DataConfig, corpus_text
from analysis.evaluation.loss import heldout
from analysis.evaluation.perplexity import (
    PROTOCOLS,
    heldout_lm_eval,
    hf_stride_windows,
    lm_eval_windows,
    perplexity,
)
from tests.helpers import lm_eval_rolling, run_cli

TEXT_CHARS = 1500  # ~340 tokens of pydoc: several windows of 64-128, a partial last one
pytestmark = pytest.mark.usefixtures("one_thread")  # 135M forwards on a shared 2-core box: threads only contend


@pytest.fixture(scope="module")
def text() -> str:
    return corpus_text(DataConfig(max_chars=TEXT_CHARS))


@pytest.mark.slow  # lm-eval's import and model wrapper take several seconds
@pytest.mark.parametrize("seq_len", [128, 100])
def test_lm_eval_protocol_equals_lm_eval(smol, text, seq_len):
    pytest.importorskip("lm_eval")
    ref = lm_eval_rolling(smol.model, smol.tokenizer, text, seq_len, batch_size=4)
    ours = perplexity(smol.model, smol.tokenizer, text, "lm-eval", seq_len, batch_size=3).to_json()
    assert ours["tokens"] == ours["scored"] == ref["tokens"]
    assert ours["nll"] == pytest.approx(ref["nll"], rel=1e-4)
    for key in ("token_perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert ours[key] == pytest.approx(ref[key], rel=1e-4), key


def _hf_recipe(model, tokenizer, text: str, seq_len: int, stride: int) -> tuple[float, int]:
    """Hugging Face's perplexity guide, written out: labels with context masked, transformers' own loss."""
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    n, nll, count, prev_end = ids.shape[1], 0.0, 0, 0
    for begin in range(0, n, stride):
        end = min(begin + seq_len, n)
        trg_len = end - prev_end
        inputs = ids[:, begin:end]
        labels = inputs.clone()
        labels[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(inputs, labels=labels).loss  # mean over the valid shifted labels
        valid = int((labels[:, 1:] != -100).sum())
        nll, count = nll + float(loss) * valid, count + valid
        prev_end = end
        if end == n:
            break
    return nll, count


@pytest.mark.parametrize("stride", [64, 40])
def test_hf_stride_protocol_equals_the_hf_recipe(smol, text, stride):
    nll, count = _hf_recipe(smol.model, smol.tokenizer, text, 64, stride)
    ours = perplexity(smol.model, smol.tokenizer, text, "hf-stride", 64, stride=stride)
    assert ours.scored == count and ours.nll == pytest.approx(nll, rel=1e-5)
    if stride == 64:
        assert ours.scored == ours.tokens - math.ceil(ours.tokens / 64)
        assert "word_perplexity" not in ours.to_json()  # not every token is scored: no word/byte figures


def test_windows_score_every_token_once():
    tokens = torch.arange(1, 24)
    scored = torch.cat([w.targets[w.targets != -100] for w in lm_eval_windows(tokens, 5, 0)])
    assert scored.tolist() == tokens.tolist()
    for stride in (4, 3, 1):  # overlapping windows: all but the first token, in order, once
        scored = torch.cat([w.targets[w.targets != -100] for w in hf_stride_windows(tokens, 5, stride)])
        assert scored.tolist() == tokens[1:].tolist()
    scored = torch.cat([w.targets[w.targets != -100] for w in hf_stride_windows(tokens, 5, 5)])
    assert scored.tolist() == [t for t in tokens.tolist() if (t - 1) % 5]  # independent windows: each start unscored
    for w in lm_eval_windows(tokens, 5, 0)[1:]:  # every later window: the 5 tokens before each target
        assert len(w.inputs) == 5


def test_heldout_windows_under_both_protocols(smol, text):
    ids = torch.tensor(smol.tokenizer(text, add_special_tokens=False)["input_ids"][:128]).view(4, 32)
    hf = heldout(smol.model, ids)
    res = heldout_lm_eval(smol.model, smol.tokenizer, ids, batch_size=2)
    assert res.scored == ids.numel() and hf.tokens == 4 * 31
    # the lm-eval protocol adds each window's first token, scored from the BOS prefix, to the same 31
    assert res.nll > hf.nll and res.windows == 4


def test_perplexity_command_writes_both_protocols(tmp_path, smol):
    import json

    src = tmp_path / "doc.txt"
    src.write_text(corpus_text(DataConfig(max_chars=1500)))
    r = run_cli("perplexity", "--data", src, "--seq-len", "64", "--device", "cpu", "--out", tmp_path / "ppl")
    assert r.code == 0, r.err
    doc = json.loads((tmp_path / "ppl" / "perplexity.json").read_text())
    assert set(doc["results"]) == set(PROTOCOLS) and doc["data"]["chars"] == 1500
    lm = doc["results"]["lm-eval"]
    direct = perplexity(smol.model, smol.tokenizer, src.read_text(), "lm-eval", 64)
    assert lm["token_perplexity"] == pytest.approx(direct.token_perplexity, rel=1e-6) and lm["scored"] == lm["tokens"]
    assert doc["model"]["name"] == "smollm2-135m" and doc["versions"]["torch"]
    assert "lm-eval" in r.out and "hf-stride" in r.out
    bad = run_cli("perplexity", "--data", src, "--protocol", "wikitext", "--out", tmp_path / "bad")
    assert bad.code == 2 and len(bad.error_lines) == 1 and "hf-stride, lm-eval" in bad.err
    assert not (tmp_path / "bad").exists()


def test_protocols_and_sizes_are_checked_when_the_job_is_made():
    """Before any text is read or model loaded, in the library as on the command line."""
    from analysis.core.errors import MinitronError
    from analysis.evaluation.perplexity import PerplexityJob

    for changes, message in (({"protocols": ("nope",)}, "unknown --protocol 'nope'"),
                             ({"seq_len": 1}, "--seq-len must be"), ({"stride": 0}, "--stride must be"),
                             ({"seq_len": 8, "stride": 9}, r"--stride must be in \[1, --seq-len 8\]"),
                             ({"batch_size": 0}, "--batch-size must be")):
        with pytest.raises(MinitronError, match=message):
            PerplexityJob(load=None, data=DataConfig(), **changes)
