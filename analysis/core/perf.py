"""Performance plumbing shared by ``analyze`` and ``bench``: timing, memory, compile counters,
and batch-size auto-tuning with out-of-memory back-off.

Nothing here knows about models; the probes that run a model live with their callers.
"""

from __future__ import annotations

import contextlib
import gc
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from analysis.core.errors import MinitronError

AUTO_CAP_CUDA = 64  # largest batch auto-tuning tries on a GPU (memory decides below that)
AUTO_CAP_CPU = 16  # on CPU, throughput decides: host RAM never raises a clean OOM
CPU_MIN_GAIN = 0.10  # on CPU, keep doubling only while tokens/s improves by at least 10%


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so wall-clock time measures the work and not the launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device, steps: int = 5, warmup: int = 2) -> dict:
    """Median wall time of ``fn`` over ``steps`` calls after ``warmup`` calls.

    The first warm-up call is reported separately (``first_call_s``): for a compiled function it
    holds the compile time. Median, not mean, because shared machines have outliers.
    """
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    first = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        fn()
    synchronize(device)
    times = []
    for _ in range(max(steps, 1)):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return {"first_call_s": first, "median_s": statistics.median(times), "min_s": min(times), "steps": len(times)}


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> tuple[int, str]:
    """(bytes, what was measured): CUDA allocator peak, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss * (1 if sys.platform == "darwin" else 1024), "process peak RSS (getrusage)"


# --- torch.compile bookkeeping --------------------------------------------------------------------
COMPILE_MODES = ("auto", "off", "regional", "full")  # see DecoderAdapter.forward


def resolve_compile(mode: str | bool | None, device: torch.device, device_map: str | None = None) -> str:
    """The compile mode to use: ``auto`` is ``regional`` on one CUDA device and ``off`` elsewhere.

    The rule comes from a measurement (benchmarks/results/bench-h200-15b-8x4096.json, README GPU
    section): on an H200, Nemotron-4 15B at 8 x 4096, the analysis pass ran at 23,185 tokens/s regional
    against 15,627 eager, and the plain forward at 23,934 regional against 22,106 eager, with 12 s of
    compiling. Compiling the whole backbone under torch < 2.14 makes transformers materialise the causal
    mask, so attention loses its flash kernel and the model ran slower than eager. On CPU, inductor's
    C++ compile costs minutes and buys little, and a ``device_map`` model spans devices.
    """
    if mode is True:  # pre-mode API: compile meant the whole backbone
        mode = "full"
    elif mode is False or mode is None:
        mode = "off" if mode is False else "auto"
    if mode not in COMPILE_MODES:
        raise MinitronError(f"unknown --compile '{mode}'; choose from {', '.join(COMPILE_MODES)}")
    if mode == "auto":
        return "regional" if device.type == "cuda" and not device_map else "off"
    return mode
@dataclass
class CompileCounts:
    """Graphs and graph breaks dynamo produced while the context was open."""

    graphs: int = 0  # distinct graphs compiled (a recompile adds one)
    graph_breaks: int = 0  # places dynamo fell back to Python
    break_reasons: list[str] = field(default_factory=list)


def _dynamo_snapshot() -> tuple[int, dict]:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"], dict(counters["graph_break"])


@contextlib.contextmanager
def count_compiles() -> Iterator[CompileCounts]:
    """Count graphs and graph breaks produced inside the block (deltas of dynamo's counters)."""
    out = CompileCounts()
    graphs0, breaks0 = _dynamo_snapshot()
    try:
        yield out
    finally:
        graphs1, breaks1 = _dynamo_snapshot()
        out.graphs = graphs1 - graphs0
        new = {k: v - breaks0.get(k, 0) for k, v in breaks1.items() if v > breaks0.get(k, 0)}
        out.graph_breaks = sum(new.values())
        out.break_reasons = sorted(new)[:5]


@contextlib.contextmanager
def hooks_guarded() -> Iterator[None]:
    """Make compiled graphs guard on module hooks while the block runs.

    By default dynamo does not guard on hooks (``skip_nnmodule_hook_guards``): a graph traced
    without the Collector's hooks would be silently reused with them registered (and the reverse),
    and the statistics would stay empty. With the guard, adding or removing hooks retraces.
    """
    import torch._dynamo.config as dynamo_config

    if not hasattr(dynamo_config, "skip_nnmodule_hook_guards"):  # older/newer torch: always guarded
        yield
        return
    with dynamo_config.patch(skip_nnmodule_hook_guards=False):
        yield


# --- out-of-memory handling and batch-size auto-tuning ---------------------------------------------
def is_oom(exc: BaseException) -> bool:
    """True for CUDA out-of-memory, including the cuBLAS/cuDNN allocation failures that surface as RuntimeError."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "ALLOC_FAILED" in text)


def free_memory() -> None:
    """Drop what a failed attempt left behind, so the next (smaller) attempt sees the memory."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _try(probe: Callable[[int], float], b: int) -> float | None:
    """Seconds the probe took at batch size b, or None if it ran out of memory."""
    try:
        return probe(b)
    except Exception as exc:  # only OOM is swallowed; everything else is re-raised
        if not is_oom(exc):
            raise
    # outside the except block: the traceback (and the tensors its frames hold) is gone
    free_memory()
    return None


def find_batch_size(probe: Callable[[int], float], cap: int, start: int = 1,
                    min_gain: float | None = None) -> int:
    """The batch size to use: double from ``start`` until ``probe`` runs out of memory or ``cap``.

    ``probe(b)`` runs one representative step at batch size b and returns its seconds. The answer
    is the largest size that fitted (out-of-memory backs off to the previous size). With
    ``min_gain`` (CPU), doubling also stops once throughput improves by less than that fraction,
    and the smaller size is kept: it is as fast and needs less memory.
    """
    cap = max(cap, 1)
    b = min(max(start, 1), cap)
    good, best_rate = None, 0.0
    while True:
        seconds = _try(probe, b)
        if seconds is None:
            break
        rate = b / max(seconds, 1e-9)
        if min_gain is not None and good is not None and rate < best_rate * (1 + min_gain):
            break
        good, best_rate = b, rate
        if b >= cap:
            break
        b = min(2 * b, cap)
    if good is None:
        raise MinitronError(f"batch size {start} already runs out of memory; use a shorter --seq-len "
                            "or a smaller model, or spread it over GPUs with --device-map auto")
    free_memory()
    return good


def auto_batch_size(probe: Callable[[int], float], device: torch.device, limit: int,
                    cap: int | None = None) -> int:
    """``find_batch_size`` with the device's policy: memory-bound on CUDA, throughput-bound on CPU."""
    if device.type == "cuda":
        return find_batch_size(probe, min(limit, cap or AUTO_CAP_CUDA))
    return find_batch_size(probe, min(limit, cap or AUTO_CAP_CPU), min_gain=CPU_MIN_GAIN)


def parse_batch_size(value: str | int) -> int | str:
    """``"auto"`` or a positive integer (CLI strings accepted)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        b = int(value)
    except (TypeError, ValueError):
        raise MinitronError(f"--batch-size must be 'auto' or a positive integer, got '{value}'") from None
    if b < 1:
        raise MinitronError(f"--batch-size must be at least 1, got {b}")
    return b
