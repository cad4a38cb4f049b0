"""Downstream evaluation through lm-evaluation-harness, on a model this toolkit loaded.

``evaluate`` hands lm-eval's ``HFLM`` our own loaded model and tokenizer (``analysis.models.loading``),
so registry names, local and pruned or distilled directories and GGUF files all evaluate the same way.
Offline by default: tasks read their data from local files or the local Hugging Face cache; a task
whose data is not there fails with one line and nothing is written. Task names are all checked before
the model loads; tasks with different shot counts run as separate lm-eval calls on the same loaded model.

Task names (``--tasks``):
  our benchmark keys (``mmlu``, ``arc_c``, ...; ``analysis.evaluation.benchmarks``) -> lm-eval's task;
  ``minitron_facts``, ``minitron_cloze``: our own tasks, data shipped in ``analysis/evaluation/tasks``;
  a path to a task YAML whose ``data_files`` are relative to the YAML (resolved here);
  any other lm-eval task, group or tag name (``--include DIR`` adds a folder of lm-eval YAMLs).

A run directory holds ``evaluation.json`` (per task: shots, metrics with lm-eval's standard errors,
sample count, task version and config hash; model fingerprint, lm-eval version, settings, timings) and
``samples.json`` (per task and metric, one value per document in document order: the paired
comparisons of ``analysis.evaluation.intervals`` need them; reading back: ``analysis.evaluation.results``).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from analysis.core import validate as V
from analysis.core.errors import MinitronError
from analysis.core.hub import offline
from analysis.core.io import check_output, check_writable, finite_or_none, output_dir, write_json
from analysis.core.provenance import now, versions
from analysis.evaluation.benchmarks import PaperTask, checked_paper_task
from analysis.evaluation.results import RESULT, RUN_PREFIX, SAMPLES, print_results
from analysis.models.loading import LoadConfig, LoadedModel, load_model

LOCAL_TASKS = Path(__file__).parent / "tasks"  # our own offline tasks
SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234, "fewshot_random_seed": 1234}
DATA_ERRORS = ("DatasetNotFoundError", "LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError",
               "FileNotFoundError", "HfHubHTTPError", "DataFilesNotFoundError", "EmptyDatasetError")


@dataclass
class EvalConfig:
    """One ``evaluate`` job."""

    load: LoadConfig = field(default_factory=LoadConfig)  # which model
    tasks: tuple[str, ...] = ("minitron_facts",)  # task names, benchmark keys or YAML paths
    num_fewshot: int | None = None  # shots for every task (None: each task's default)
    paper_settings: bool = False  # the paper's shots and metric for each paper benchmark
    limit: int | None = None  # at most this many documents per task (None: all)
    batch_size: int = 8  # lm-eval requests per forward
    include: tuple[str, ...] = ()  # extra folders of lm-eval task YAMLs
    allow_code_execution: bool = False  # tasks that execute model-written code (MBPP, HumanEval)
    bootstrap_iters: int = 1000  # lm-eval's bootstrap for the standard error of non-mean metrics

    def __post_init__(self):
        V.check_fields(self, {"num_fewshot": ("--num-fewshot", V.SHOTS), "limit": ("--limit", V.LIMIT),
                              "batch_size": ("--batch-size", V.BATCH),
                              "bootstrap_iters": ("bootstrap_iters", V.INTERVAL_ITERS)})


@dataclass(frozen=True)
class TaskRequest:
    """One requested task, resolved: what lm-eval gets, with which shots, reported by which metric."""

    name: str  # as the user wrote it
    task: str  # lm-eval task (or group) name
    spec: str | dict  # lm-eval task spec: a registered name, or an inline config
    source: str  # "lm-eval", "minitron-lab", or the YAML path
    shots: int | None = None  # None: the task's own default
    metric: str | None = None  # headline results key, e.g. "acc_norm,none" (None: the task's first)
    paper: PaperTask | None = None  # the paper benchmark it measures


# --- task resolution ------------------------------------------------------------------------------------
def _lm_eval():
    """lm-eval's API, imported on first use; a missing extra is a one-line error."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise MinitronError(f"evaluate needs lm-evaluation-harness ({exc.name} is missing): "
                            "pip install 'minitron-lab[eval]'") from None
    return lm_eval, HFLM, TaskManager


def yaml_task(path: Path) -> dict:
    """An inline lm-eval config from a task YAML, its relative ``data_files`` resolved against the YAML's folder."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.constructor.ConstructorError:
        raise MinitronError(f"{path}: uses lm-eval YAML tags (!function); pass its folder with --include "
                            "and the task name with --tasks") from None
    except yaml.YAMLError as exc:
        raise MinitronError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(doc, dict) or "task" not in doc:
        raise MinitronError(f"{path}: not an lm-eval task config (no 'task' key)")
    files = (doc.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(files, (str, list)):
        files = {"test": files}
    for split, names in (files or {}).items():
        resolved = [str((path.parent / n).resolve()) for n in ([names] if isinstance(names, str) else names)]
        missing = [r for r in resolved if not Path(r).is_file()]
        if missing:
            raise MinitronError(f"{path}: data file {missing[0]} (split '{split}') does not exist")
        files[split] = resolved[0] if len(resolved) == 1 else resolved
    if files:
        doc["dataset_kwargs"] = {**doc["dataset_kwargs"], "data_files": files}
    return doc


def resolve(cfg: EvalConfig) -> list[TaskRequest]:
    """Every requested task, resolved and checked, before any model is loaded."""
    if not cfg.tasks:
        raise MinitronError("--tasks is empty; name at least one task (e.g. minitron_facts)")
    if cfg.paper_settings and cfg.num_fewshot is not None:
        raise MinitronError("--paper-settings sets the shots of each benchmark; drop --num-fewshot")
    out = []
    for name in cfg.tasks:
        path = Path(name).expanduser()
        if path.suffix in (".yaml", ".yml"):
            if not path.is_file():
                raise MinitronError(f"task file {path} does not exist")
            spec = yaml_task(path)
            out.append(TaskRequest(name, spec["task"], spec, str(path), cfg.num_fewshot))
        elif (LOCAL_TASKS / f"{name}.yaml").is_file():
            spec = yaml_task(LOCAL_TASKS / f"{name}.yaml")
            out.append(TaskRequest(name, spec["task"], spec, "minitron-lab", cfg.num_fewshot))
        else:
            paper = checked_paper_task(name, cfg.allow_code_execution)
            task = paper.task if paper else name
            shots = paper.shots if (paper and cfg.paper_settings) else cfg.num_fewshot
            metric = paper.metric if (paper and cfg.paper_settings) else None
            out.append(TaskRequest(name, task, task, "lm-eval", shots, metric, paper))
    dupes = {r.task for r in out if sum(o.task == r.task for o in out) > 1}
    if dupes:
        raise MinitronError(f"task {min(dupes)} is requested twice")
    return out


def task_manager(requests: list[TaskRequest], include: tuple[str, ...]):
    """lm-eval's TaskManager; its built-in index (seconds to build) only when a built-in task is asked for."""
    _, _, TaskManager = _lm_eval()
    for d in include:
        if not Path(d).is_dir():
            raise MinitronError(f"--include {d}: not a folder")
    named = [r for r in requests if isinstance(r.spec, str)]
    tm = TaskManager(include_path=list(include) or None, include_defaults=bool(named))
    for r in named:
        if r.spec not in tm.all_tasks:
            close = difflib.get_close_matches(r.spec, tm.all_tasks, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise MinitronError(f"unknown task '{r.name}': not an lm-eval task, a benchmark key, one of our tasks "
                                f"({', '.join(local_tasks())}) nor a task YAML{hint}")
    return tm


def local_tasks() -> list[str]:
    """Names of the tasks this toolkit ships."""
    return sorted(p.stem for p in LOCAL_TASKS.glob("*.yaml"))


# --- running --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_harness() -> Iterator[None]:
    """lm-eval logs every setting at INFO/WARNING; keep errors, and our own one-line messages, visible."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _data_error(exc: Exception, requests: list[TaskRequest]) -> MinitronError | None:
    """A missing dataset (offline, not cached, no such file) as one line, or None for other failures."""
    chain, e = [], exc
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if not any(type(c).__name__ in DATA_ERRORS for c in chain):
        return None
    names = ", ".join(r.name for r in requests)
    return MinitronError(f"the data of task(s) {names} is not available offline ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}); tasks read local files or the local Hugging "
                         "Face cache: run once with --download on a machine with network, or use a task YAML "
                         "with local data")


def run_tasks(lm: LoadedModel, requests: list[TaskRequest], cfg: EvalConfig,
              tm) -> list[tuple[list[TaskRequest], dict]]:
    """Evaluate ``lm`` on every request; lm-eval's results dicts by shot group (one call per distinct shots)."""
    lm_eval, HFLM, _ = _lm_eval()
    if lm.tokenizer is None:
        raise MinitronError(f"{lm.name} has no tokenizer; downstream tasks need one (a model directory with "
                            "tokenizer files, a registry model or a GGUF)")
    with quiet_harness():
        model = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=cfg.batch_size)
    groups: dict[int | None, list[TaskRequest]] = {}
    for r in requests:
        groups.setdefault(r.shots, []).append(r)
    out = []
    for shots, group in groups.items():
        try:
            with offline(not cfg.load.allow_download), quiet_harness():
                res = lm_eval.simple_evaluate(
                    model=model, tasks=[r.spec for r in group], num_fewshot=shots, limit=cfg.limit,
                    task_manager=tm, log_samples=True, bootstrap_iters=cfg.bootstrap_iters,
                    confirm_run_unsafe_code=cfg.allow_code_execution, **SEEDS)
        except Exception as exc:  # only missing data becomes a user error; the rest propagates
            err = _data_error(exc, group)
            if err is None:
                raise
            raise err from None
        out.append((group, res))
    return out


# --- results --------------------------------------------------------------------------------------------
def _per_doc(samples: list[dict]) -> dict[str, list[float]]:
    """"metric,filter" (as in lm-eval's results) -> one number per document, in document order."""
    out: dict[str, list[tuple[int, float]]] = {}
    for s in samples:
        for k, v in s.items():
            if k not in ("doc_id", "target") and isinstance(v, (int, float, bool)):
                out.setdefault(f"{k},{s.get('filter', 'none')}", []).append((s["doc_id"], float(v)))
    return {k: [v for _, v in sorted(rows)] for k, rows in out.items()}


def _headline(r: TaskRequest, metrics: dict, config: dict) -> str | None:
    """The metric a task is reported by: the paper's, else the first of the task's metric_list, else the first."""
    if r.metric and r.metric in metrics:
        return r.metric
    keys = [k for k in metrics if "_stderr" not in k and k not in ("alias", "name", "sample_len")]
    for m in (config or {}).get("metric_list", []):
        hit = next((k for k in keys if k.split(",")[0] == m.get("metric")), None)
        if hit:
            return hit
    return keys[0] if keys else None


def task_results(requests_results: list, lm_eval_version: str) -> tuple[dict, dict]:
    """(tasks section of evaluation.json, per-document values) from lm-eval's results dicts."""
    tasks, samples = {}, {}
    for group, res in requests_results:
        for r in group:
            metrics = {k: v for k, v in res["results"].get(r.task, {}).items() if k not in ("alias", "name")}
            config = res.get("configs", {}).get(r.task, {})
            headline = _headline(r, metrics, config)
            children = res.get("group_subtasks", {}).get(r.task, [])
            leaves = [t for t in res.get("samples", {}) if t == r.task or t in children]
            tasks[r.name] = {
                "task": r.task, "source": r.source, "shots": res.get("n-shot", {}).get(r.task, r.shots),
                "metric": headline, "value": metrics.get(headline), "stderr": _stderr(metrics, headline),
                "aggregation": _aggregation(config, headline),
                "n": _n(res, r.task, leaves), "version": res.get("versions", {}).get(r.task),
                "config_sha256": _sha(config),
                "metrics": metrics,
                "paper": asdict(r.paper) if r.paper else None,
                "harness": f"lm-evaluation-harness {lm_eval_version}",
            }
            samples[r.name] = {t: _per_doc(res["samples"][t]) for t in leaves}
    return tasks, samples


def _sha(obj) -> str:
    """Short sha256 of a JSON-able object (a task config), key order ignored."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _aggregation(config: dict, headline: str | None) -> str | None:
    """How lm-eval aggregates the headline metric over documents ("mean", "perplexity", ...); groups: "mean"."""
    if headline is None:
        return None
    name = headline.split(",")[0]
    for m in config.get("metric_list", []) if config else []:
        if m.get("metric") == name:
            agg = m.get("aggregation", "mean")
            return agg if isinstance(agg, str) else getattr(agg, "__name__", str(agg))
    return "mean"


def _stderr(metrics: dict, headline: str | None):
    if headline is None:
        return None
    name, _, filt = headline.partition(",")
    v = metrics.get(f"{name}_stderr,{filt}")
    return v if isinstance(v, (int, float)) else None


def _n(res: dict, task: str, leaves: list[str]) -> int:
    counts = res.get("n-samples", {})
    return sum(counts.get(t, {}).get("effective", 0) for t in (leaves or [task]))


# --- the job --------------------------------------------------------------------------------------------
def run_key(cfg: EvalConfig, requests: list[TaskRequest], lm: LoadedModel, lm_eval_version: str) -> str:
    """Hash of everything that changes the numbers: weights, dtype, tasks and shots, limit, lm-eval version."""
    payload = {"weights": lm.provenance["weights_fingerprint"], "dtype": lm.provenance["dtype"],
               "tasks": [(r.task, r.shots, r.metric, _sha(r.spec)) for r in requests],
               "limit": cfg.limit, "lm_eval": lm_eval_version, "seeds": SEEDS}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def evaluate(cfg: EvalConfig, out: str | Path | None = None, force: bool = False, console=None) -> Path:
    """Run ``cfg`` and write its run directory (default ``runs/<model>/eval-<key>/``); returns the directory."""
    from importlib.metadata import version

    t0 = time.perf_counter()
    requests = resolve(cfg)
    if out is not None:
        check_output(out, force)  # before any work
    else:
        check_writable("runs")  # runs/<model>/eval-<key>/ is known only once the weights are read
    tm = task_manager(requests, cfg.include)
    lm = load_model(cfg.load)
    lm_eval_version = version("lm_eval")
    key = run_key(cfg, requests, lm, lm_eval_version)
    run_dir = Path(out) if out else Path("runs") / lm.name / f"{RUN_PREFIX}{key}"
    if out is None:
        check_output(run_dir, force)
    t_load = time.perf_counter() - t0
    results = run_tasks(lm, requests, cfg, tm)
    tasks, samples = task_results(results, lm_eval_version)
    model = {k: lm.provenance.get(k) for k in ("name", "ref", "kind", "hf_id", "weights_fingerprint", "params",
                                               "dtype", "device")}
    doc = {
        "kind": "evaluation", "created": now(), "measured_by": "Minitron Lab (python cli.py evaluate)",
        "model": model, "tasks": tasks,
        "settings": {"requested": list(cfg.tasks), "num_fewshot": cfg.num_fewshot,
                     "paper_settings": cfg.paper_settings, "limit": cfg.limit, "batch_size": cfg.batch_size,
                     "include": list(cfg.include), "seeds": SEEDS, "bootstrap_iters": cfg.bootstrap_iters,
                     "load": asdict(cfg.load)},
        "versions": versions() | {"lm_eval": lm_eval_version},
        "timings": {"load_s": t_load, "evaluate_s": time.perf_counter() - t0 - t_load,
                    "total_s": time.perf_counter() - t0},
    }
    doc, samples = finite_or_none(doc), finite_or_none(samples)  # an undefined statistic is null, never NaN
    with output_dir(run_dir, "evaluate") as stage:
        write_json(stage / RESULT, doc)
        write_json(stage / SAMPLES, samples)
    if console:
        print_results(doc, console)
    return run_dir
