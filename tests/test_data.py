"""Text sources and the sampling protocol: disjoint deterministic splits, file formats, clear errors."""

import json

import pytest
import torch

from analysis.core.errors import MinitronError
from analysis.data import (
    DataConfig,
    build_splits,
    check_disjoint,
    load_documents,
    make_splits,
    pydoc_documents,
    record_spans,
    split_record,
    window_spans,
)


def test_splits_are_disjoint_and_deterministic():
    stream = torch.arange(1000)
    cfg = DataConfig(seq_len=10, calib_samples=30, eval_samples=20, seed=1)
    a, b = make_splits(stream, cfg), make_splits(stream, cfg)
    assert torch.equal(a.calib, b.calib) and torch.equal(a.eval, b.eval)
    starts_c = set((a.calib[:, 0] // 10).tolist())
    starts_e = set((a.eval[:, 0] // 10).tolist())
    assert not starts_c & starts_e and len(starts_c) == 30 and len(starts_e) == 20
    assert torch.equal(a.calib[:, 1:] - a.calib[:, :-1], torch.ones(30, 9, dtype=torch.long))  # contiguous
    # the evaluation split does not move when the calibration size changes
    c = make_splits(stream, DataConfig(seq_len=10, calib_samples=5, eval_samples=20, seed=1))
    assert torch.equal(c.eval, a.eval)


def _starts(ids: torch.Tensor, seq_len: int) -> set[int]:
    """Window indices of windows cut from ``torch.arange`` (the first token names the window)."""
    return set((ids[:, 0] // seq_len).tolist())


def test_three_splits_are_disjoint_and_evaluation_comes_from_the_end():
    stream = torch.arange(1000)
    cfg = DataConfig(seq_len=10, calib_samples=30, eval_samples=20, test_samples=15, seed=1)
    s = make_splits(stream, cfg)
    calib, sel, test = (_starts(t, 10) for t in (s.calib, s.eval, s.test))
    assert len(calib) == 30 and len(sel) == 20 and len(test) == 15
    assert not calib & sel and not calib & test and not sel & test
    order = torch.randperm(100, generator=torch.Generator().manual_seed(1))
    assert s.meta["test_windows"] == order.flip(0)[:15].tolist()  # the permutation read from its end
    assert s.meta["eval_windows"] == order[:20].tolist()  # analyze's held-out windows did not move
    # the evaluation split does not move when the other sizes change, and grows by appending
    for other in (DataConfig(seq_len=10, calib_samples=2, eval_samples=1, test_samples=15, seed=1),
                  DataConfig(seq_len=10, calib_samples=60, eval_samples=25, test_samples=15, seed=1)):
        assert torch.equal(make_splits(stream, other).test, s.test)
    bigger = make_splits(stream, DataConfig(seq_len=10, calib_samples=30, eval_samples=20, test_samples=18, seed=1))
    assert torch.equal(bigger.test[:15], s.test)
    parts = {name: window_spans(s.meta, split) for split, name in (("calib", "c"), ("eval", "e"), ("test", "t"))}
    check_disjoint(parts)
    rec = split_record(s.meta)
    assert rec["evaluation"]["windows"] == s.meta["test_windows"] and rec["selection"]["n"] == 20
    assert record_spans(rec, "calibration") == parts["c"]


def test_exclude_keeps_the_evaluation_split_off_other_windows():
    stream = torch.arange(1000)
    cfg = DataConfig(seq_len=10, calib_samples=0, eval_samples=0, test_samples=10, seed=3)
    plain = make_splits(stream, cfg).meta["test_windows"]
    # another analysis cut the same stream at length 25: its windows 4 and 7 cover tokens 100..124, 175..199
    taken = ((100, 125), (175, 200))
    moved = make_splits(stream, cfg, exclude=taken).meta["test_windows"]
    banned = {10, 11, 12, 17, 18, 19}
    assert not banned & set(moved) and len(moved) == 10
    assert [w for w in plain if w not in banned] == moved[: len([w for w in plain if w not in banned])]
    with pytest.raises(MinitronError, match="evaluation windows are free"):
        make_splits(stream, DataConfig(seq_len=10, calib_samples=50, eval_samples=0, test_samples=50, seed=3),
                     exclude=((0, 500),))


def test_check_disjoint_names_the_overlap():
    check_disjoint({"a": [(0, 10), (20, 30)], "b": [(10, 20), (30, 40)]})
    with pytest.raises(MinitronError, match="the a and b windows overlap"):
        check_disjoint({"a": [(0, 10), (20, 30)], "b": [(25, 35)]})
    with pytest.raises(MinitronError, match="overlap"):  # a short span inside a long one
        check_disjoint({"long": [(0, 100)], "short": [(40, 50)], "other": [(200, 210)]})


def test_too_little_text():
    with pytest.raises(MinitronError, match="gives 10 windows of 10 tokens"):
        make_splits(torch.arange(100), DataConfig(seq_len=10, calib_samples=8, eval_samples=4))


def test_empty_file(tmp_path):
    f = tmp_path / "empty.txt"
    f.write_text("  \n")
    with pytest.raises(MinitronError, match="holds no text"):
        load_documents(DataConfig(source=str(f)))


def test_folder_of_txt_and_jsonl(tmp_path):
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "first"}) + "\n\n" + json.dumps({"text": "x"}) + "\n")
    assert load_documents(DataConfig(source=str(tmp_path))) == ["first", "x", "second"]
    (tmp_path / "c.jsonl").write_text('{"body": 1}\n')
    with pytest.raises(MinitronError, match="c.jsonl:1"):
        load_documents(DataConfig(source=str(tmp_path)))


def test_unknown_source_is_clear_and_never_goes_online():
    """Datasets are read offline unless --download: the hub flags are on during the call and restored after."""
    import os

    pytest.importorskip("datasets")
    import huggingface_hub.constants as hub

    before = (os.environ.get("HF_DATASETS_OFFLINE"), os.environ.get("HF_HUB_OFFLINE"), hub.HF_HUB_OFFLINE)
    with pytest.raises(MinitronError, match=r"nonexistent-dataset-xyz.*offline: only the local Hugging Face cache"):
        load_documents(DataConfig(source="nonexistent-dataset-xyz"))
    assert (os.environ.get("HF_DATASETS_OFFLINE"), os.environ.get("HF_HUB_OFFLINE"), hub.HF_HUB_OFFLINE) == before


def test_default_corpus_is_pydoc_in_key_order():
    from pydoc_data.topics import topics

    docs = pydoc_documents()
    assert docs[0] == topics[min(topics)] and len(docs) == len(topics)


def test_seq_len_longer_than_context(smol):
    with pytest.raises(MinitronError, match="longer than the model's context"):
        build_splits(smol.tokenizer, DataConfig(seq_len=9000), max_positions=8192)


def test_build_splits_on_default_corpus(smol):
    s = build_splits(smol.tokenizer, DataConfig(seq_len=128, calib_samples=4, eval_samples=2))
    assert s.calib.shape == (4, 128) and s.eval.shape == (2, 128)
    assert s.meta["stream_tokens"] > 100_000 and s.meta["source"] == "pydoc"


def test_shared_tokens_between_window_grids():
    from analysis.data import shared_tokens

    def naive(a, a_len, b, b_len):
        covered = {t for i in a for t in range(i * a_len, (i + 1) * a_len)}
        return any(t in covered for j in b for t in range(j * b_len, (j + 1) * b_len))

    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        a_len, b_len = (int(x) for x in torch.randint(1, 12, (2,), generator=g))
        a = torch.randperm(20, generator=g)[: int(torch.randint(0, 6, (1,), generator=g))].tolist()
        b = torch.randperm(20, generator=g)[: int(torch.randint(0, 6, (1,), generator=g))].tolist()
        assert shared_tokens(a, a_len, b, b_len) == naive(a, a_len, b, b_len)
