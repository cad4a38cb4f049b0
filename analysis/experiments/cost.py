"""What the experiments cost, in units of one teacher forward over one window (a "window-forward").

Estimates only: they drive the progress bar and the time printed before a run starts
(``units × seconds per unit``, the latter timed on the machine itself by ``probe``). A model with
a share p of the teacher's parameters costs about p per window forward (FLOPs per token are
~2 x parameters at these short windows); forward and backward of a student cost about 4p.

    held-out loss          n · p
    held-out loss + KL     n · (p + 1 + KL)        (the teacher scores the same windows; full-vocabulary KL)
    training step          b · (4p + kd · (1 + KD)) + OPT · p
    analysis               1.2 · calibration + selection · (1 + Σ_n Σ_s drop(s, n))

KD and KL were fitted on the embedded default (one thread, a Nemotron-3-8B-ratio student, 12
windows of 128 tokens): measured / modelled came within 15% for each line above.

where a drop pass resumes from the stored state at layer s + n: the remaining layers plus the LM
head, drop(s, n) = h + (1 - h) · (L - s - n) / L, h = the LM head's share of the parameters.
"""

from __future__ import annotations

import os
import time

import torch

from analysis.models.registry import Architecture

KD = 1.1  # full-vocabulary float32 KL with recompute in backward, per window, beyond the teacher forward
KL = 0.9  # held-out KL(teacher || student) over all positions and the vocabulary, per window
OPT = 0.2  # AdamW update per step, relative to one window forward of the same model
HOOKS = 1.2  # calibration forward with the importance hooks


def share(student: Architecture, teacher: Architecture) -> float:
    """p: the student's parameters over the teacher's."""
    return student.params()["total"] / teacher.params()["total"]


def heldout(p: float, windows: int) -> float:
    return p * windows


def heldout_pair(p: float, windows: int) -> float:
    return (p + 1 + KL) * windows


def train(p: float, steps: int, batch: int, kd: bool = True) -> float:
    return steps * (batch * (4 * p + (1 + KD if kd else 0)) + OPT * p)


def analysis(arch: Architecture, calib: int, select: int, block_sizes: tuple[int, ...]) -> float:
    """Calibration pass plus full and drop-block passes over the selection windows (module docstring)."""
    L = arch.layers
    h = arch.vocab * arch.hidden / arch.params()["total"]
    drops = sum(h + (1 - h) * (L - s - n) / L for n in block_sizes if n <= L for s in range(L - n + 1))
    return HOOKS * calib + select * (1 + drops)


@torch.no_grad()
def probe(model: torch.nn.Module, seq_len: int, repeats: int = 2) -> float:
    """Seconds of one window forward of ``model`` on this machine (random ids, after one warm-up)."""
    ids = torch.randint(0, model.config.vocab_size, (1, seq_len), generator=torch.Generator().manual_seed(0))
    device = next(model.parameters()).device
    model(ids.to(device), use_cache=False)
    t0 = time.perf_counter()
    for _ in range(repeats):
        model(ids.to(device), use_cache=False)
    return (time.perf_counter() - t0) / repeats


def fastest_threads(model: torch.nn.Module, seq_len: int) -> tuple[int, float]:
    """Set torch to the faster of 1 thread and all cores for ``model``; returns (threads, seconds per window).

    On a CPU shared with other jobs, a second OpenMP thread can spin-wait for a core and make every
    forward many times slower (measured: 16 s instead of 0.8 s per window on a loaded 2-core box), so
    the count is timed, not assumed. The choice holds for the whole run.
    """
    timed = {}
    for n in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(n)
        timed[n] = probe(model, seq_len, repeats=1)
    best = min(timed, key=timed.get)
    torch.set_num_threads(best)
    return best, timed[best]
