"""The ``analyze`` pipeline: load -> split -> collect (calibration) -> evaluate + sensitivity -> save.

Phase 1 streams the calibration split through the model once with hooks that accumulate
importance statistics and layer-boundary cosines. Phase 2 scores the held-out split with the
full model and, reusing each batch's boundary states, with every contiguous block of n layers
removed. Results are cached by a key of (model fingerprint, data hashes, config); an interrupted
run keeps a checkpoint after every batch and continues with ``resume=True``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm.auto import tqdm

from analysis import sensitivity as sens
from analysis.collect import Collector
from analysis.data import DataConfig, Splits, build_splits
from analysis.errors import MinitronError
from analysis.loading import LoadConfig, LoadedModel, load_model
from analysis.results import DEFAULT_AGGREGATION, METRICS, write_run
from analysis.summary import build_metrics, depth_tensors, print_summary

CHECKPOINT_EVERY_S = 30.0


@dataclass
class AnalysisConfig:
    """What to analyze and how."""

    load: LoadConfig = field(default_factory=LoadConfig)  # which model, dtype, device
    data: DataConfig = field(default_factory=DataConfig)  # which text, sample counts, seq_len
    batch_size: int = 8  # samples per forward
    block_sizes: tuple[int, ...] = (1, 2, 4, 8)  # contiguous block sizes for drop losses / angular distance
    pre_activation: bool = False  # neuron importance before the MLP activation (paper's X W1^T)
    compile: bool | None = None  # torch.compile the calibration forward (None: on for CUDA)
    sensitivity: bool = True  # compute drop-block losses (the expensive part on CPU)


class RunInterrupted(MinitronError):
    """Raised by ``stop_after`` (tests) after the checkpoint is written."""

    exit_code = 130


def run_key(cfg: AnalysisConfig, lm: LoadedModel, splits: Splits) -> str:
    """Cache key: weights fingerprint, data hashes and every setting that changes the numbers."""
    payload = {
        "weights": lm.provenance["weights_fingerprint"], "dtype": lm.provenance["dtype"],
        "calib": splits.meta["calib_sha256"], "eval": splits.meta["eval_sha256"],
        "batch_size": cfg.batch_size, "block_sizes": sorted(set(cfg.block_sizes)),
        "pre_activation": cfg.pre_activation, "sensitivity": cfg.sensitivity,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _tokenizer_for(lm: LoadedModel):
    """Random-init models have no tokenizer: borrow the embedded default's (ids stay in range)."""
    if lm.tokenizer is not None:
        return lm.tokenizer, None
    vocab = lm.model.config.vocab_size
    tok = load_model(LoadConfig(device="cpu")).tokenizer
    if len(tok) > vocab:
        raise MinitronError(f"{lm.name} has no tokenizer and a vocabulary ({vocab}) smaller than the default's")
    return tok, "smollm2-135m (borrowed: random-init model has none)"


def _batches(ids: torch.Tensor, size: int):
    return [ids[s:s + size] for s in range(0, ids.shape[0], size)]


class _Checkpoint:
    """Partial state of a run, saved atomically next to the run directory."""

    def __init__(self, run_dir: Path):
        self.path = run_dir.parent / f".{run_dir.name}.partial.pt"
        self.last = time.monotonic()

    def load(self) -> dict | None:
        return torch.load(self.path, weights_only=False) if self.path.exists() else None

    def save(self, state: dict, force: bool = False) -> None:
        if not force and time.monotonic() - self.last < CHECKPOINT_EVERY_S:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path)
        self.last = time.monotonic()

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _calibrate(cfg, ad, collector, batches, state, ckpt, stop_after, device):
    """Phase 1: one forward per batch with the importance hooks."""
    use_compile = cfg.compile if cfg.compile is not None else device.type == "cuda"
    forward = torch.compile(ad.backbone, dynamic=False) if use_compile else ad.backbone
    with collector.collecting(), torch.no_grad():
        for b in tqdm(range(state["calib_done"], len(batches)), desc="calibration", unit="batch",
                      initial=state["calib_done"], total=len(batches)):
            ids = batches[b].to(device)
            valid = ids.shape[0]
            if use_compile and valid < cfg.batch_size:  # fixed shapes: pad, then mask the padding out
                ids = torch.cat([ids, ids[:1].expand(cfg.batch_size - valid, -1)])
            collector.seq_len = ids.shape[1]
            forward(input_ids=ids, use_cache=False)
            collector.fold(valid)
            state["calib_done"] = b + 1
            _maybe_stop(state, ckpt, collector, stop_after)


def _evaluate(cfg, ad, sizes, batches, state, ckpt, collector, stop_after, device):
    """Phase 2: full-model NLL and drop-block NLL per held-out batch, prefix reused."""
    combos = [(n, s) for n in (sizes if cfg.sensitivity else ()) for s in range(ad.num_layers - n + 1)]
    bar = tqdm(total=len(batches) * (1 + len(combos)), desc="eval + sensitivity", unit="pass",
               initial=state["eval_done"] * (1 + len(combos)))
    for b in range(state["eval_done"], len(batches)):
        ids = batches[b].to(device)
        t0 = time.perf_counter()
        nll, states = sens.full_pass(ad, ids)
        state["nll_full"] += float(nll)
        state["eval_tokens"] += ids.shape[0] * (ids.shape[1] - 1)
        state["eval_s"] += time.perf_counter() - t0
        bar.update()
        t0 = time.perf_counter()
        for n, s in combos:
            state["nll_drop"].setdefault(n, [0.0] * (ad.num_layers - n + 1))[s] += float(
                sens.drop_block_nll(ad, states, ids, s, n))
            bar.update()
        state["sensitivity_s"] += time.perf_counter() - t0
        del states
        state["eval_done"] = b + 1
        _maybe_stop(state, ckpt, collector, stop_after)
    bar.close()


def _maybe_stop(state, ckpt, collector, stop_after):
    state["collector"] = collector.state_dict()
    state["batches_done"] = state.get("batches_done", 0) + 1
    stop = stop_after is not None and state["batches_done"] >= stop_after
    ckpt.save(state, force=stop)
    if stop:
        raise RunInterrupted(f"interrupted after {state['batches_done']} batches; rerun with --resume")


def run_analysis(cfg: AnalysisConfig, out: str | Path | None = None, force: bool = False, resume: bool = False,
                 console=None, stop_after: int | None = None) -> Path:
    """Run (or reuse) an analysis and return its run directory. See the module docstring."""
    t_start = time.perf_counter()
    lm = load_model(cfg.load)
    t_load = time.perf_counter() - t_start
    if cfg.batch_size < 1:
        raise MinitronError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    tokenizer, borrowed = _tokenizer_for(lm)
    splits = build_splits(tokenizer, cfg.data, getattr(lm.model.config, "max_position_embeddings", None))
    key = run_key(cfg, lm, splits)
    run_dir = Path(out) if out else Path("runs") / lm.name / key
    if (run_dir / METRICS).exists() and not force:
        cached = json.loads((run_dir / METRICS).read_text())
        if cached.get("run_id") == key:
            if console:
                console.print(f"cached result for this configuration (use --force to recompute): {run_dir}")
            return run_dir
    ad, device = lm.adapter, next(lm.model.parameters()).device
    collector = Collector(ad, cfg.block_sizes, cfg.pre_activation)
    sizes = collector.block_sizes
    ckpt = _Checkpoint(run_dir)
    state = ckpt.load() if resume else None
    if state is None or state.get("key") != key:
        state = {"key": key, "calib_done": 0, "eval_done": 0, "nll_full": 0.0, "eval_tokens": 0, "nll_drop": {},
                 "calib_s": 0.0, "eval_s": 0.0, "sensitivity_s": 0.0}
    else:
        collector.load_state_dict(state["collector"])
    t0 = time.perf_counter()
    _calibrate(cfg, ad, collector, _batches(splits.calib, cfg.batch_size), state, ckpt, stop_after, device)
    state["calib_s"] += time.perf_counter() - t0
    _evaluate(cfg, ad, sizes, _batches(splits.eval, cfg.batch_size), state, ckpt, collector, stop_after, device)
    tensors = collector.finalize()
    tensors |= depth_tensors(tensors, state, sizes, ad.num_layers)
    tensors = _name_defaults(tensors)
    timings = {"load_s": t_load, "calibration_s": state["calib_s"], "eval_s": state["eval_s"],
               "sensitivity_s": state["sensitivity_s"], "total_s": time.perf_counter() - t_start}
    metrics = build_metrics(key, lm, splits, cfg, state, tensors, sizes, timings, borrowed)
    write_run(run_dir, tensors, metrics)
    ckpt.clear()
    if console:
        print_summary(metrics, console)
    return run_dir


def _name_defaults(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the default-aggregation aliases ``heads``, ``neurons``, ``channels``, ``channels.per_norm``."""
    for axis in ("heads", "neurons", "channels", "channels.per_norm"):
        t[axis] = t[f"{axis}.{DEFAULT_AGGREGATION}"]
    return t


def versions() -> dict[str, str]:
    import transformers

    try:
        from importlib.metadata import version

        ours = version("minitron-lab")
    except Exception:  # noqa: BLE001 - running from a checkout without install
        ours = "0.1.0+checkout"
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "minitron_lab": ours}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

