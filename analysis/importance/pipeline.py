"""The ``analyze`` pipeline: load -> split -> collect (calibration) -> evaluate + sensitivity -> save.

Phase 1 streams the calibration split through the model once with hooks that accumulate
importance statistics and layer-boundary cosines. Phase 2 scores the held-out split with the
full model and, reusing each batch's boundary states, with every contiguous block of n layers
removed. Results are cached by a key of (model fingerprint, data hashes, config); an interrupted
run keeps a checkpoint (JSON progress + safetensors statistics, never a pickle) and continues with
``resume=True``.

Under torchrun (WORLD_SIZE > 1) each rank takes every N-th batch of both phases and the
statistics are merged in rank order (``analysis.core.distributed``); only rank 0 writes. With
``batch_size="auto"`` the largest batch that fits (GPU) or the fastest one (CPU) is found by
probing an eager calibration and evaluation step (``analysis.core.perf``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from analysis.core import distributed as dd
from analysis.core import validate as V
from analysis.core.errors import Interrupted, MinitronError
from analysis.core.interrupt import StopRequest, deferred_interrupt
from analysis.core.io import check_output, check_writable, made_by_us, read_json
from analysis.core.perf import (
    COMPILE_MODES,
    auto_batch_size,
    count_compiles,
    hooks_guarded,
    parse_batch_size,
    resolve_compile,
)
from analysis.core.provenance import now, versions
from analysis.data import RANDOM_SOURCE, DataConfig, Splits, build_splits, random_splits
from analysis.evaluation.loss import PROTOCOL
from analysis.evaluation.perplexity import PROTOCOLS, heldout_lm_eval
from analysis.importance import sensitivity as sens
from analysis.importance.bootstrap import bootstrap
from analysis.importance.checkpoint import Checkpoint, Progress
from analysis.importance.collect import Collector, neuron_site
from analysis.importance.metrics import spearman
from analysis.importance.probe import analysis_probe
from analysis.importance.report import depth_tensors, layer_table, print_summary
from analysis.importance.results import DEFAULT_AGGREGATION, METRICS, write_run
from analysis.models.loading import (
    LoadConfig,
    LoadedModel,
    check_device,
    default_tokenizer,
    load_model,
    resolve_device,
)

RUNS_ROOT = Path("runs")  # default home of runs: runs/<model>/<run-id>/
DEFAULT_BLOCK_SIZES = (1, 2, 4, 8)  # those that fit the model, when none are given


@dataclass
class AnalysisConfig:
    """What to analyze and how."""

    load: LoadConfig = field(default_factory=LoadConfig)  # which model, dtype, device
    data: DataConfig = field(default_factory=DataConfig)  # which text, sample counts, seq_len
    batch_size: int | str = 8  # samples per forward, or "auto" (largest that fits / fastest, see perf.py)
    max_batch_size: int | None = None  # cap for "auto" (None: perf.AUTO_CAP_CUDA / AUTO_CAP_CPU)
    block_sizes: tuple[int, ...] | None = None  # contiguous block sizes for drop losses / angular distance
    # (None: DEFAULT_BLOCK_SIZES up to the model's depth; sizes given explicitly must fit the model)
    pre_activation: bool = False  # neuron importance before the MLP activation (paper's X W1^T)
    compile: str = "auto"  # auto | off | regional | full (analysis.core.perf.resolve_compile)
    compile_backend: str = "inductor"  # "eager" traces with dynamo only (tests: graph breaks, recompiles)
    sensitivity: bool = True  # compute drop-block losses (the expensive part on CPU)
    bootstrap: int = 0  # resamples of the calibration windows for ranking stability (0: off)
    bootstrap_seed: int = 0  # seed of the resampling

    def __post_init__(self):
        # zero calibration windows would give all-zero importance, zero held-out windows a 0-token perplexity
        V.check_fields(self.data, {"calib_samples": ("--samples", V.SAMPLES), "eval_samples": ("--eval-samples", V.SAMPLES)})
        self.batch_size = parse_batch_size(self.batch_size)
        V.BATCH.check("--max-batch-size", self.max_batch_size)
        if self.block_sizes is not None and not self.block_sizes:
            raise MinitronError("--block-sizes needs at least one value")
        for n in self.block_sizes or ():
            V.BLOCK_SIZE.check("--block-sizes", n)
        check_device(self.load.device, compute=True)
        if isinstance(self.compile, str):  # True/False: the pre-mode API, read by resolve_compile
            V.check_choice("--compile", self.compile, COMPILE_MODES)
        V.check_fields(self, {"bootstrap": ("--bootstrap", V.BOOTSTRAP), "bootstrap_seed": ("--seed", V.SEED)})
        if self.bootstrap and self.data.calib_samples < 2:  # one window resampled is always the same window
            raise MinitronError(f"--bootstrap resamples the calibration windows: it needs --samples of at least 2, "
                                f"got {self.data.calib_samples}")


class RunInterrupted(Interrupted):
    """Raised after the checkpoint is written: Ctrl-C, or ``stop_after`` in tests."""


def run_key(cfg: AnalysisConfig, lm: LoadedModel, splits: Splits) -> str:
    """Cache key: weights fingerprint, data hashes and every setting that changes the numbers."""
    payload = {
        "weights": lm.provenance["weights_fingerprint"], "dtype": lm.provenance["dtype"],
        "device": torch.device(lm.provenance["device"]).type,  # a CPU result is not served for a CUDA request
        "calib": splits.meta["calib_sha256"], "eval": splits.meta["eval_sha256"],
        "batch_size": cfg.batch_size, "block_sizes": sorted(set(cfg.block_sizes)),
        "pre_activation": cfg.pre_activation, "sensitivity": cfg.sensitivity,
    }
    if cfg.bootstrap:  # only then: runs without it keep their keys
        payload["bootstrap"] = [cfg.bootstrap, cfg.bootstrap_seed]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def splits_for(lm: LoadedModel, data: DataConfig) -> tuple[Splits, str | None]:
    """Calibration and evaluation token ids, and which tokenizer made them (None: the model's own)."""
    max_pos = getattr(lm.model.config, "max_position_embeddings", None)
    if data.source == RANDOM_SOURCE:
        return random_splits(lm.model.config.vocab_size, data, max_pos), "none (random token ids)"
    if lm.tokenizer is not None:
        return build_splits(lm.tokenizer, data, max_pos), None
    tok = default_tokenizer()  # random-init models have none: borrow the embedded default's
    if len(tok) > lm.model.config.vocab_size:
        raise MinitronError(f"{lm.name} has no tokenizer and a vocabulary ({lm.model.config.vocab_size}) "
                            "smaller than the default's")
    return build_splits(tok, data, max_pos), "smollm2-135m (borrowed: random-init model has none)"


def _batches(ids: torch.Tensor, size: int) -> list[torch.Tensor]:
    return [ids[s:s + size] for s in range(0, ids.shape[0], size)]


class AnalysisRun:
    """One analyze job in one process: calibrate, evaluate, merge ranks, write."""

    def __init__(self, cfg: AnalysisConfig, lm: LoadedModel, splits: Splits, key: str, run_dir: Path,
                 d: dd.Dist, tokenizer_note: str | None = None, t_start: float | None = None):
        self.cfg, self.lm, self.splits, self.key, self.run_dir, self.d = cfg, lm, splits, key, run_dir, d
        self.tokenizer_note = tokenizer_note  # which tokenizer cut the splits when not the model's own
        self.ad, self.device = lm.adapter, next(lm.model.parameters()).device
        self.collector = self._collector()
        self.ckpt = Checkpoint(run_dir, d)
        self.stop_after: int | None = None  # tests: raise RunInterrupted after this many batches
        self.stop = StopRequest()  # set by the first Ctrl-C (``deferred_interrupt``)
        self.progress: Progress | None = None
        self.t_start = time.perf_counter() if t_start is None else t_start  # this session's start
        self.earlier_s = 0.0  # wall seconds of earlier sessions (resumed runs)

    def _collector(self) -> Collector:
        cfg = self.cfg
        return Collector(self.ad, cfg.block_sizes, cfg.pre_activation, device=self.device, per_sample=cfg.bootstrap > 0)

    def start(self, resume: bool) -> None:
        """Resume from the checkpoint if asked and it matches, else start fresh (resolving the batch size)."""
        self.progress = self.ckpt.load(self.key, self.collector) if resume else None
        if self.progress is None:  # a resumed run keeps the size its batches were cut with
            self.progress = Progress(key=self.key, batch_size=self._batch_size())
        else:
            self.progress.sessions += 1
            self.earlier_s = self.progress.wall_s
        self.ckpt.last = time.monotonic()  # the first periodic checkpoint comes CHECKPOINT_EVERY_S into the work

    def wall_s(self) -> float:
        """Wall seconds of the whole run: earlier sessions (to their last checkpoint) plus this one."""
        return self.earlier_s + time.perf_counter() - self.t_start

    def _batch_size(self) -> int:
        """The configured batch size, or the auto-tuned one (the smallest over ranks, so shards match)."""
        bs = parse_batch_size(self.cfg.batch_size)
        if bs != "auto":
            return bs
        splits = self.splits
        limit = max(splits.calib.shape[0], splits.eval.shape[0], 1)
        probe = analysis_probe(self.ad, self.device, splits.calib.shape[1], self.cfg.block_sizes,
                               self.cfg.pre_activation, evaluate=splits.eval.shape[0] > 0 and self.cfg.sensitivity)
        return min(dd.gather(auto_batch_size(probe, self.device, limit, self.cfg.max_batch_size), self.d))

    def calibrate(self) -> None:
        """Phase 1: one forward per batch with the importance hooks; fixed shapes when compiled."""
        p, cfg, collector = self.progress, self.cfg, self.collector
        batches = dd.shard(_batches(self.splits.calib, p.batch_size), self.d)
        mode = resolve_compile(cfg.compile, self.device, cfg.load.device_map)
        with collector.collecting(fuse=mode == "regional"), torch.no_grad(), hooks_guarded(), \
                self.ad.forward(mode, cfg.compile_backend) as forward, count_compiles() as counts:
            for b in tqdm(range(p.calib_done, len(batches)), desc="calibration", unit="batch",
                          initial=p.calib_done, total=len(batches), disable=not self.d.is_main):
                t0 = time.perf_counter()
                ids = batches[b].to(self.device)
                valid = ids.shape[0]
                if mode != "off" and valid < p.batch_size:  # fixed shapes: pad, then mask the padding out
                    ids = torch.cat([ids, ids[:1].expand(p.batch_size - valid, -1)])
                collector.begin(*ids.shape)
                forward(input_ids=ids, use_cache=False)
                collector.fold(valid)
                p.calib_done = b + 1
                p.calib_s += time.perf_counter() - t0  # per batch: an interrupted session's share is kept
                self._batch_done()
        p.compile = {"requested": str(cfg.compile), "mode": mode, "backend": cfg.compile_backend if mode != "off" else None,
                     "graphs": counts.graphs, "graph_breaks": counts.graph_breaks, "break_reasons": counts.break_reasons}

    def evaluate(self) -> None:
        """Phase 2: full-model NLL and drop-block NLL per held-out batch, prefix reused."""
        p, ad, L = self.progress, self.ad, self.ad.num_layers
        sizes = self.collector.block_sizes if self.cfg.sensitivity else ()
        batches = dd.shard(_batches(self.splits.eval, p.batch_size), self.d)
        combos = [(n, s) for n in sizes for s in range(L - n + 1)]
        bar = tqdm(total=len(batches) * (1 + len(combos)), desc="eval + sensitivity", unit="pass",
                   initial=p.eval_done * (1 + len(combos)), disable=not self.d.is_main)
        for n in sizes:  # every rank reports every size, even with no batch
            p.nll_drop.setdefault(n, [0.0] * (L - n + 1))
        for b in range(p.eval_done, len(batches)):
            ids = batches[b].to(self.device)
            t0 = time.perf_counter()
            nll, states = sens.full_pass(ad, ids)
            p.nll_full += float(nll)
            p.eval_tokens += ids.shape[0] * (ids.shape[1] - 1)
            p.eval_s += time.perf_counter() - t0
            bar.update()
            t0 = time.perf_counter()
            for n, s in combos:
                p.nll_drop[n][s] += float(sens.drop_block_nll(ad, states, ids, s, n))
                bar.update()
            p.sensitivity_s += time.perf_counter() - t0
            del states
            p.eval_done = b + 1
            self._batch_done()
        bar.close()

    def _batch_done(self) -> None:
        """Checkpoint (at most every CHECKPOINT_EVERY_S, and at once on Ctrl-C or ``stop_after``), then stop
        if asked. Called between batches only, so a checkpoint always holds whole batches."""
        p = self.progress
        p.batches_done += 1
        p.wall_s = self.wall_s()
        stop = self.stop.requested or (self.stop_after is not None and p.batches_done >= self.stop_after)
        self.ckpt.save(p, self.collector, force=stop)
        if stop:
            raise RunInterrupted(f"interrupted after {p.calib_done} calibration and {p.eval_done} evaluation "
                                 f"batches; checkpoint saved in {self.ckpt.path}; rerun the same command with "
                                 "--resume to continue")

    def merge_ranks(self) -> None:
        """Every rank's statistics merged in rank order; sums for NLL and tokens, max for wall times."""
        if not self.d.enabled:
            return
        p = self.progress
        part = {k: getattr(p, k) for k in ("nll_full", "eval_tokens", "nll_drop", "calib_s", "eval_s",
                                           "sensitivity_s")}
        ranks = dd.gather({"statistics": self.collector.state(), "progress": part}, self.d)
        merged = self._collector()
        p.nll_full, p.eval_tokens = 0.0, 0
        p.nll_drop = {n: [0.0] * len(v) for n, v in p.nll_drop.items()}
        for r in ranks:  # fixed rank order: the same float result on every rank and every run
            one = self._collector()
            one.load_state(r["statistics"])
            merged.merge(one)
            p.nll_full += r["progress"]["nll_full"]
            p.eval_tokens += r["progress"]["eval_tokens"]
            for n, losses in r["progress"]["nll_drop"].items():
                p.nll_drop[n] = [a + b for a, b in zip(p.nll_drop[n], losses)]
        for k in ("calib_s", "eval_s", "sensitivity_s"):
            setattr(p, k, max(r["progress"][k] for r in ranks))
        self.collector = merged

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor of ``importance.safetensors`` (names in ``analysis.importance.results``)."""
        t = self.collector.finalize()
        t |= depth_tensors(t, self.progress.nll_drop, self.progress.eval_tokens, self.collector.block_sizes)
        for axis in ("heads", "neurons", "channels", "channels.per_norm"):  # default-aggregation aliases
            t[axis] = t[f"{axis}.{DEFAULT_AGGREGATION}"]
        return t

    def lm_eval_protocol(self) -> dict:
        """The held-out windows under lm-eval's protocol (each window a document), or why it was not measured."""
        if self.cfg.data.source == RANDOM_SOURCE:
            return {"not_measured": "random token ids have no text (words, bytes) and no tokenizer"}
        if self.splits.eval.shape[0] == 0:
            return {"not_measured": "no held-out windows"}
        tokenizer = self.lm.tokenizer or default_tokenizer()  # random-init models borrowed the default's for the splits
        with torch.no_grad():
            result = heldout_lm_eval(self.lm.model, tokenizer, self.splits.eval, self.progress.batch_size)
        return result.to_json() | {"documents": "each held-out window is one document (its decoded text)"}

    def metrics(self, t: dict[str, torch.Tensor], timings: dict) -> dict:
        """The metrics.json document (schema in the README and ``analysis.importance.results``)."""
        p, cfg, lm, splits = self.progress, self.cfg, self.lm, self.splits
        if p.eval_tokens <= 0:  # never report a perplexity of nothing
            raise MinitronError("no held-out tokens were scored; ask for at least one --eval-samples window")
        loss = p.nll_full / p.eval_tokens
        blocks = {}
        for n in self.collector.block_sizes:
            entry = {"start": list(range(len(t[f"angular.n{n}"]))), "angular": t[f"angular.n{n}"].tolist()}
            if f"drop_block_loss.n{n}" in t:
                entry["loss"] = t[f"drop_block_loss.n{n}"].tolist()
            blocks[str(n)] = entry
        agreement = {}
        if "drop_layer_loss" in t:
            rho = spearman(t["block_importance"], t["drop_layer_loss"])
            agreement["spearman_bi_vs_drop_loss"] = rho if math.isfinite(rho) else None  # constant ranks: undefined
        model = {k: lm.provenance.get(k) for k in ("name", "ref", "kind", "hf_id", "weights_fingerprint", "params",
                                                     "dtype", "device", "source_format")}
        return {
            "run_id": self.key, "created": now(), "model": model,
            "architecture": asdict(self.ad.arch),
            "data": splits.meta | {"tokenizer": self.tokenizer_note or "model's own"},
            "config": {"batch_size": cfg.batch_size, "block_sizes": list(self.collector.block_sizes),
                       "pre_activation": cfg.pre_activation, "compile": cfg.compile, "sensitivity": cfg.sensitivity,
                       "aggregation_default": DEFAULT_AGGREGATION, "load": asdict(cfg.load), "data": asdict(cfg.data)},
            "eval": {"loss": loss, "perplexity": math.exp(loss), "tokens_scored": p.eval_tokens, "protocol": PROTOCOL,
                     "protocol_name": "hf-stride",
                     "protocols": {"hf-stride": {"loss": loss, "token_perplexity": math.exp(loss),
                                                 "scored": p.eval_tokens, "description": PROTOCOLS["hf-stride"].description},
                                   "lm-eval": self.lm_eval_protocol()}},
            "neuron_importance": neuron_site(cfg.pre_activation, self.ad.gated_mlp),
            "layers": layer_table(t, loss),
            "blocks": blocks,
            "rank_agreement": agreement,
            "timings": timings | {"calibration_tokens_per_s": splits.calib.numel() / max(timings["calibration_s"], 1e-9)},
            "versions": versions(),
        } | ({"bootstrap": self.stability()} if cfg.bootstrap else {})

    def stability(self) -> dict:
        """Ranking stability under resampled calibration windows (``analysis.importance.bootstrap``)."""
        t0 = time.perf_counter()
        out = bootstrap(self.collector.sample_rows(), self.ad.num_kv_heads, self.cfg.bootstrap, self.cfg.bootstrap_seed)
        return out | {"seconds": time.perf_counter() - t0}

    def write(self, t_load: float, console=None) -> None:
        """Finalize and write the run on rank 0; the other ranks wait until it is on disk."""
        p = self.progress
        if self.d.is_main:
            timings = {"load_s": t_load, "calibration_s": p.calib_s, "eval_s": p.eval_s,
                       "sensitivity_s": p.sensitivity_s, "total_s": self.wall_s(), "sessions": p.sessions,
                       "world_size": self.d.world, "batch_size": p.batch_size}
            if p.compile is not None:
                timings["compile"] = p.compile
            t = self.tensors()
            metrics = self.metrics(t, timings)
            write_run(self.run_dir, t, metrics)
            if console:
                print_summary(metrics, console)
        dd.barrier(self.d)
        self.ckpt.clear()


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


def _cached(run_dir: Path, key: str) -> dict | None:
    """The metrics of a finished run of this key in ``run_dir``, or None (absent, another key, or damaged:
    a damaged run is recomputed and replaced, never served)."""
    if not (run_dir / METRICS).exists():
        return None
    try:
        metrics = read_json(run_dir / METRICS, "run metrics file")
    except MinitronError:
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("run_id") == key else None


def _block_sizes(cfg: AnalysisConfig, lm: LoadedModel) -> AnalysisConfig:
    """The block sizes the run uses: the default ones the model is deep enough for, or the given ones,
    which must all fit (checked as soon as the model is known, before any computation)."""
    layers = lm.adapter.num_layers
    if cfg.block_sizes is None:
        return replace(cfg, block_sizes=tuple(n for n in DEFAULT_BLOCK_SIZES if n <= layers))
    too_long = [n for n in cfg.block_sizes if n > layers]
    if too_long:
        raise MinitronError(f"--block-sizes {too_long[0]} exceeds the model's {layers} layers; use sizes in [1, {layers}]")
    return cfg


def _run(cfg, out, force, resume, console, stop_after, d: dd.Dist) -> Path:
    t_start = time.perf_counter()
    if out is not None:  # before any work: a refused or unwritable --out costs nothing
        check_output(out, force)
    else:
        check_writable(RUNS_ROOT)
    lm = load_model(cfg.load)
    t_load = time.perf_counter() - t_start
    cfg = _block_sizes(cfg, lm)
    splits, tokenizer_note = splits_for(lm, cfg.data)
    key = run_key(cfg, lm, splits)
    run_dir = Path(out) if out else RUNS_ROOT / lm.name / key
    cached = None if force else _cached(run_dir, key)
    if cached is not None:
        if console:
            console.print(f"cached result for this configuration (use --force to recompute): {run_dir}",
                          markup=False, highlight=False)
            print_summary(cached, console)
        return run_dir
    if out is None and run_dir.exists() and not made_by_us(run_dir):
        check_output(run_dir, force)  # a default run directory someone else filled is not ours to replace
    run = AnalysisRun(cfg, lm, splits, key, run_dir, d, tokenizer_note, t_start)
    run.stop_after = stop_after
    with deferred_interrupt("batch") as run.stop:
        run.start(resume)
        run.calibrate()
        run.evaluate()
    run.merge_ranks()
    run.write(t_load, console)
    return run_dir
