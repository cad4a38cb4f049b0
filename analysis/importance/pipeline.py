"""The ``analyze`` pipeline: load -> split -> collect (calibration) -> evaluate + sensitivity -> save.

Phase 1 streams the calibration split through the model once with hooks that accumulate
importance statistics and layer-boundary cosines. Phase 2 scores the held-out split with the
full model and, reusing each batch's boundary states, with every contiguous block of n layers
removed. Results are cached by a key of (model fingerprint, data hashes, config); an interrupted
run keeps a checkpoint after every batch and continues with ``resume=True``.

Under torchrun (WORLD_SIZE > 1) each rank takes every N-th batch of both phases and the
statistics are merged in rank order (analysis/distributed.py); only rank 0 writes. With
``batch_size="auto"`` the largest batch that fits (GPU) or the fastest one (CPU) is found by
probing an eager calibration and evaluation step (analysis/perf.py).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm.auto import tqdm

from analysis.core import distributed as dd
from analysis.core.errors import MinitronError
from analysis.core.perf import auto_batch_size, count_compiles, hooks_guarded, parse_batch_size, synchronize
from analysis.data import RANDOM_SOURCE, DataConfig, Splits, build_splits, random_splits
from analysis.importance import sensitivity as sens
from analysis.importance.collect import Collector
from analysis.importance.report import build_metrics, depth_tensors, print_summary
from analysis.importance.results import DEFAULT_AGGREGATION, METRICS, write_run
from analysis.models.loading import LoadConfig, LoadedModel, default_tokenizer, load_model, resolve_device

CHECKPOINT_EVERY_S = 30.0


@dataclass
class AnalysisConfig:
    """What to analyze and how."""

    load: LoadConfig = field(default_factory=LoadConfig)  # which model, dtype, device
    data: DataConfig = field(default_factory=DataConfig)  # which text, sample counts, seq_len
    batch_size: int | str = 8  # samples per forward, or "auto" (largest that fits / fastest, see perf.py)
    max_batch_size: int | None = None  # cap for "auto" (None: perf.AUTO_CAP_CUDA / AUTO_CAP_CPU)
    block_sizes: tuple[int, ...] = (1, 2, 4, 8)  # contiguous block sizes for drop losses / angular distance
    pre_activation: bool = False  # neuron importance before the MLP activation (paper's X W1^T)
    compile: bool | None = None  # torch.compile the calibration forward (None: on for one CUDA device)
    compile_backend: str = "inductor"  # "eager" traces with dynamo only (tests: graph breaks, recompiles)
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


def _splits_for(lm: LoadedModel, data: DataConfig) -> tuple[Splits, str | None]:
    """Calibration and evaluation token ids, and which tokenizer made them (None: the model's own)."""
    max_pos = getattr(lm.model.config, "max_position_embeddings", None)
    if data.source == RANDOM_SOURCE:
        return random_splits(lm.model.config.vocab_size, data, max_pos), "none (random token ids)"
    tokenizer, borrowed = _tokenizer_for(lm)
    return build_splits(tokenizer, data, max_pos), borrowed


def _tokenizer_for(lm: LoadedModel):
    """Random-init models have no tokenizer: borrow the embedded default's (ids stay in range)."""
    if lm.tokenizer is not None:
        return lm.tokenizer, None
    vocab = lm.model.config.vocab_size
    tok = default_tokenizer()
    if len(tok) > vocab:
        raise MinitronError(f"{lm.name} has no tokenizer and a vocabulary ({vocab}) smaller than the default's")
    return tok, "smollm2-135m (borrowed: random-init model has none)"


def _batches(ids: torch.Tensor, size: int):
    return [ids[s:s + size] for s in range(0, ids.shape[0], size)]


class _Checkpoint:
    """Partial state of a run, saved atomically next to the run directory (one file per rank)."""

    def __init__(self, run_dir: Path, d: dd.Dist):
        rank = f".rank{d.rank}" if d.enabled else ""
        self.path = run_dir.parent / f".{run_dir.name}.partial{rank}.pt"
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
            collector.seq_len = seq_len
            ad.backbone(input_ids=ids, use_cache=False)
            collector.fold(b)
        if evaluate:
            _, states = sens.full_pass(ad, ids)
            sens.drop_block_nll(ad, states, ids, 0, 1)
            del states
        synchronize(device)
        return time.perf_counter() - t0
    return probe


def _resolve_batch_size(cfg: AnalysisConfig, ad, splits: Splits, device, d: dd.Dist) -> int:
    """The configured batch size, or the auto-tuned one (the smallest over ranks, so shards match)."""
    bs = parse_batch_size(cfg.batch_size)
    if bs != "auto":
        return bs
    limit = max(splits.calib.shape[0], splits.eval.shape[0], 1)
    probe = analysis_probe(ad, device, splits.calib.shape[1], cfg.block_sizes, cfg.pre_activation,
                           evaluate=splits.eval.shape[0] > 0 and cfg.sensitivity)
    return min(dd.gather(auto_batch_size(probe, device, limit, cfg.max_batch_size), d))


def _calibrate(cfg, ad, collector, batches, state, ckpt, stop_after, device, d):
    """Phase 1: one forward per batch with the importance hooks; fixed shapes when compiled."""
    bs = state["batch_size"]
    use_compile = cfg.compile if cfg.compile is not None else (device.type == "cuda" and not cfg.load.device_map)
    forward = torch.compile(ad.backbone, dynamic=False, backend=cfg.compile_backend) if use_compile else ad.backbone
    with collector.collecting(), torch.no_grad(), hooks_guarded(), count_compiles() as counts:
        for b in tqdm(range(state["calib_done"], len(batches)), desc="calibration", unit="batch",
                      initial=state["calib_done"], total=len(batches), disable=not d.is_main):
            ids = batches[b].to(device)
            valid = ids.shape[0]
            if use_compile and valid < bs:  # fixed shapes: pad, then mask the padding out
                ids = torch.cat([ids, ids[:1].expand(bs - valid, -1)])
            collector.seq_len = ids.shape[1]
            forward(input_ids=ids, use_cache=False)
            collector.fold(valid)
            state["calib_done"] = b + 1
            _maybe_stop(state, ckpt, collector, stop_after)
    if use_compile:
        state["compile"] = {"backend": cfg.compile_backend, "graphs": counts.graphs,
                            "graph_breaks": counts.graph_breaks, "break_reasons": counts.break_reasons}


def _evaluate(cfg, ad, sizes, batches, state, ckpt, collector, stop_after, device, d):
    """Phase 2: full-model NLL and drop-block NLL per held-out batch, prefix reused."""
    combos = [(n, s) for n in (sizes if cfg.sensitivity else ()) for s in range(ad.num_layers - n + 1)]
    bar = tqdm(total=len(batches) * (1 + len(combos)), desc="eval + sensitivity", unit="pass",
               initial=state["eval_done"] * (1 + len(combos)), disable=not d.is_main)
    for n in sizes if cfg.sensitivity else ():  # every rank reports every size, even with no batch
        state["nll_drop"].setdefault(n, [0.0] * (ad.num_layers - n + 1))
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
            state["nll_drop"][n][s] += float(sens.drop_block_nll(ad, states, ids, s, n))
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


def _merge_ranks(collector: Collector, state: dict, d: dd.Dist) -> tuple[Collector, dict]:
    """Every rank's statistics merged in rank order; sums for NLL and tokens, max for wall times."""
    if not d.enabled:
        return collector, state
    part = {k: state[k] for k in ("nll_full", "eval_tokens", "nll_drop", "calib_s", "eval_s", "sensitivity_s")}
    ranks = dd.gather({"collector": collector.state_dict(), "state": part}, d)
    merged = Collector(collector.ad, collector.block_sizes, collector.pre_activation, device=collector.device)
    out = dict(state, nll_full=0.0, eval_tokens=0, nll_drop={n: [0.0] * len(v) for n, v in state["nll_drop"].items()})
    for r in ranks:  # fixed rank order: the same float result on every rank and every run
        one = Collector(collector.ad, collector.block_sizes, collector.pre_activation, device=collector.device)
        one.load_state_dict(r["collector"])
        merged.merge(one)
        out["nll_full"] += r["state"]["nll_full"]
        out["eval_tokens"] += r["state"]["eval_tokens"]
        for n, losses in r["state"]["nll_drop"].items():
            out["nll_drop"][n] = [a + b for a, b in zip(out["nll_drop"][n], losses)]
    for k in ("calib_s", "eval_s", "sensitivity_s"):
        out[k] = max(r["state"][k] for r in ranks)
    return merged, out


def _fresh_state(key: str) -> dict:
    return {"key": key, "calib_done": 0, "eval_done": 0, "nll_full": 0.0, "eval_tokens": 0, "nll_drop": {},
            "calib_s": 0.0, "eval_s": 0.0, "sensitivity_s": 0.0}


def _place(cfg: AnalysisConfig, d: dd.Dist) -> AnalysisConfig:
    """One GPU per rank under torchrun (cuda:LOCAL_RANK); device_map and torchrun do not mix."""
    if not d.enabled:
        return cfg
    if cfg.load.device_map:
        raise MinitronError("--device-map spreads one model over all GPUs; run it without torchrun")
    if resolve_device(cfg.load.device).type == "cuda":
        return replace(cfg, load=replace(cfg.load, device=f"cuda:{d.local_rank}"))
    return cfg


def run_analysis(cfg: AnalysisConfig, out: str | Path | None = None, force: bool = False, resume: bool = False,
                 console=None, stop_after: int | None = None) -> Path:
    """Run (or reuse) an analysis and return its run directory. See the module docstring."""
    uses_cuda = cfg.load.device != "cpu" and not cfg.load.device_map and torch.cuda.is_available()
    d = dd.setup(use_cuda=uses_cuda and resolve_device(cfg.load.device).type == "cuda")
    try:
        return _run(_place(cfg, d), out, force, resume, console if d.is_main else None, stop_after, d)
    finally:
        dd.teardown(d)


def _run(cfg, out, force, resume, console, stop_after, d: dd.Dist) -> Path:
    t_start = time.perf_counter()
    lm = load_model(cfg.load)
    t_load = time.perf_counter() - t_start
    parse_batch_size(cfg.batch_size)  # fail fast on a bad value, before any data work
    splits, borrowed = _splits_for(lm, cfg.data)
    key = run_key(cfg, lm, splits)
    run_dir = Path(out) if out else Path("runs") / lm.name / key
    if (run_dir / METRICS).exists() and not force:
        cached = json.loads((run_dir / METRICS).read_text())
        if cached.get("run_id") == key:
            if console:
                console.print(f"cached result for this configuration (use --force to recompute): {run_dir}")
            return run_dir
    ad, device = lm.adapter, next(lm.model.parameters()).device
    collector = Collector(ad, cfg.block_sizes, cfg.pre_activation, device=device)
    ckpt = _Checkpoint(run_dir, d)
    state = ckpt.load() if resume else None
    if state is None or state.get("key") != key or state["collector"].get("format") != Collector.FORMAT:
        state = _fresh_state(key)
    else:
        collector.load_state_dict(state["collector"])
    if "batch_size" not in state:  # a resumed run keeps the size its batches were cut with
        state["batch_size"] = _resolve_batch_size(cfg, ad, splits, device, d)
    bs = state["batch_size"]
    t0 = time.perf_counter()
    _calibrate(cfg, ad, collector, dd.shard(_batches(splits.calib, bs), d), state, ckpt, stop_after, device, d)
    state["calib_s"] += time.perf_counter() - t0
    _evaluate(cfg, ad, collector.block_sizes, dd.shard(_batches(splits.eval, bs), d), state, ckpt, collector,
              stop_after, device, d)
    collector, state = _merge_ranks(collector, state, d)
    timings = {"load_s": t_load, "calibration_s": state["calib_s"], "eval_s": state["eval_s"],
               "sensitivity_s": state["sensitivity_s"], "total_s": time.perf_counter() - t_start}
    _write(cfg, lm, splits, key, run_dir, collector, state, timings, borrowed, console, d)
    ckpt.clear()
    return run_dir


def _write(cfg, lm, splits, key, run_dir, collector, state, timings, borrowed, console, d: dd.Dist) -> None:
    """Finalize and write the run on rank 0; the other ranks wait until it is on disk."""
    sizes = collector.block_sizes
    if d.is_main:
        tensors = collector.finalize()
        tensors |= depth_tensors(tensors, state, sizes, lm.adapter.num_layers)
        tensors = _name_defaults(tensors)
        timings |= {"world_size": d.world, "batch_size": state["batch_size"]}
        if "compile" in state:
            timings["compile"] = state["compile"]
        metrics = build_metrics(key, lm, splits, cfg, state, tensors, sizes, timings, borrowed)
        write_run(run_dir, tensors, metrics)
        if console:
            print_summary(metrics, console)
    dd.barrier(d)


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


def config_dict(cfg: AnalysisConfig) -> dict:
    return asdict(cfg)
