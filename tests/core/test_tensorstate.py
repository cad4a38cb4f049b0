"""Training state as JSON + safetensors: an exact round trip of what torch.save used to pickle."""

from __future__ import annotations

import math

import pytest
import torch

from analysis.core.errors import MinitronError
from analysis.core.tensorstate import load_state, pack, save_state, unpack


def _trained_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    for _ in range(3):
        model(torch.randn(2, 4)).square().sum().backward()
        opt.step()
        sched.step()
    return opt, sched


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_optimizer_scheduler_and_rng_round_trip_exactly(tmp_path):
    opt, sched = _trained_optimizer()
    state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": torch.get_rng_state(),
             "history": [{"loss": 1.5, "grad_norm": math.inf}, {"loss": math.nan}], "shape": (2, 3),
             "odd": {1: "int key", "__tensor__": "a key that looks like a tag"}}
    save_state(state, tmp_path / "s.json", tmp_path / "s.safetensors")
    back = load_state(tmp_path / "s.json", tmp_path / "s.safetensors")
    assert _same(state, back)
    assert isinstance(next(iter(back["optimizer"]["state"])), int)  # parameter ids stay integers
    opt2, _ = _trained_optimizer()
    opt2.load_state_dict(back["optimizer"])  # what resuming does


def test_nothing_but_data_is_stored():
    with pytest.raises(TypeError, match="cannot store a object"):
        pack({"fn": object()})
    doc, tensors = pack({"a": torch.ones(2)})
    assert doc == {"a": {"__tensor__": "t0"}} and list(tensors) == ["t0"]
    assert unpack(doc, tensors)["a"].tolist() == [1.0, 1.0]


def test_damaged_state_is_named(tmp_path):
    save_state({"x": torch.zeros(1)}, tmp_path / "s.json", tmp_path / "s.safetensors")
    (tmp_path / "s.safetensors").write_bytes(b"\x80\x04 a pickle, not safetensors")
    with pytest.raises(MinitronError, match="s.safetensors: corrupt training state"):
        load_state(tmp_path / "s.json", tmp_path / "s.safetensors")
    (tmp_path / "s.json").write_text('{"format": "something else"}')
    with pytest.raises(MinitronError, match="not a minitron-lab state document"):
        load_state(tmp_path / "s.json", tmp_path / "s.safetensors")
