"""The probe batch-size auto-tuning runs for analyze and bench: one eager analysis step at a given size."""

from __future__ import annotations

import time

import torch

from analysis.core.perf import synchronize
from analysis.importance import sensitivity as sens
from analysis.importance.collect import Collector


def analysis_probe(ad, device, seq_len: int, block_sizes, pre_activation: bool, evaluate: bool):
    """``probe(b) -> seconds``: one eager calibration step (hooks on) and, with ``evaluate``, one
    evaluation step (full pass keeping every boundary state + one drop-layer pass) on random ids.

    Eager on purpose: it needs at least the memory of the compiled graph (no fusion), so a size
    that passes here fits when compiled, and probing compiles nothing.
    """
    vocab = ad.config.vocab_size

    def probe(b: int) -> float:
        ids = torch.randint(0, vocab, (b, seq_len), device=device)
        synchronize(device)
        t0 = time.perf_counter()
        collector = Collector(ad, block_sizes, pre_activation, device=device)
        with collector.collecting(), torch.no_grad():
            collector.begin(b, seq_len)
            ad.backbone(input_ids=ids, use_cache=False)
            collector.fold(b)
        if evaluate:
            _, states = sens.full_pass(ad, ids)
            sens.drop_block_nll(ad, states, ids, 0, 1)
            del states
        synchronize(device)
        return time.perf_counter() - t0
    return probe
