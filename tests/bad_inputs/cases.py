"""The bad-input table: every case a user can cause, run through the real CLI entry point.

Each ``Case`` is a command line (placeholders: ``{w}`` the case's working directory, ``{m}`` the
model copy a planter damaged, ``{tiny}`` / ``{run}`` the shared tiny model and analysis run), what to
plant first, the exit code and a phrase the single ``error:`` line must contain. ``writes`` lists
the paths (relative to ``{w}``) a successful case may create or change; everything else on disk,
planted files included, must be byte-identical afterwards, and no planted pickle may have run.

Categories (the ``id`` prefix): options out of range, corrupt inputs, outputs (data loss), code
execution, templates, misleading messages, and cards.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.bad_inputs import plants as P


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    code: int  # expected exit code
    phrase: str  # must appear in the one error (or, for code 0, warning) line
    plant: Callable | None = None  # (w, assets) -> None
    env: Callable | None = None  # (monkeypatch) -> None: what the machine lacks (a package)
    writes: tuple[str, ...] = ()  # paths under {w} a successful case may create or change
    skip: Callable | None = field(default=None)  # () -> reason or None


def _cuda() -> str | None:
    import torch

    return "CUDA is present" if torch.cuda.is_available() else None


def _big_memory() -> str | None:
    import torch

    from analysis.models.checks import available_bytes

    free = available_bytes(torch.device("cpu")) or 0
    return "this machine has the memory for a 15B float32 model" if free > 60 * 2**30 else None


def _without(module: str):
    return lambda mp: mp.setitem(sys.modules, module, None)


def _offline(mp) -> None:
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("HF_DATASETS_OFFLINE", "1")


def _tiny_analysis_cfg(a):
    from analysis.data import DataConfig
    from analysis.importance.pipeline import AnalysisConfig
    from analysis.models.loading import LoadConfig

    return AnalysisConfig(load=LoadConfig(model=str(a.tiny), device="cpu"), batch_size=2, block_sizes=(1,),
                          data=DataConfig(seq_len=16, calib_samples=2, eval_samples=1))


def _range(prefix: str, argv: tuple[str, ...], option: str, values: dict[str, str], fixed=()) -> list[Case]:
    """One case per out-of-range value of ``option``: the message names the option and its range."""
    return [Case(f"{prefix}-{option.strip('-')}-{name}", (*argv, *fixed, option, value), 2, f"{option} must be")
            for name, value in values.items()]


# --- shared command lines ----------------------------------------------------------------------------
QUICK = ("--samples", "2", "--eval-samples", "1", "--seq-len", "16", "--batch-size", "2", "--block-sizes", "1",
         "--no-figures", "--device", "cpu")
ANALYZE_TINY = ("analyze", "--model", "{tiny}", *QUICK)
ANALYZE_M = ("analyze", "--model", "{m}", *QUICK)
BENCH_TINY = ("bench", "--model", "{tiny}", "--device", "cpu", "--steps", "1", "--warmup", "0", "--batch-size", "1")
DISTILL = ("distill", "--student", "{tiny}", "--teacher", "{tiny}", "--device", "cpu", "--steps", "1",
           "--seq-len", "16", "--batch-size", "1", "--eval-samples", "1")
PRUNE_TINY = ("prune", "--model", "{tiny}", "--device", "cpu", "--no-eval", "--samples", "2", "--seq-len", "16",
              "--eval-samples", "1", "--batch-size", "2")

PPL_TINY = ("perplexity", "--model", "{tiny}", "--device", "cpu", "--seq-len", "16", "--max-chars", "4000")
EVAL_TINY = ("evaluate", "--model", "{tiny}", "--device", "cpu", "--limit", "2")
COMPARE_TINY = ("compare", "--student", "{tiny}", "--teacher", "{tiny}", "--device", "cpu", "--seq-len", "16",
                "--eval-samples", "2", "--cka-tokens", "8", "--worst", "2", "--no-figures")
REPORT = ("experiment", "--report", "--out", "{w}/res", "--readme", "{w}/README.md")

INT = {"zero": "0", "negative": "-3"}
SAMPLE = INT | {"huge": "100000000"}

CASES: list[Case] = [
    # --- analyze: every numeric option out of range, checked before anything is loaded -----------------
    *_range("range-analyze", ("analyze",), "--samples", SAMPLE),
    *_range("range-analyze", ("analyze",), "--eval-samples", INT),
    *_range("range-analyze", ("analyze",), "--seq-len", {"zero": "0", "one": "1", "huge": "100000000"}),
    *_range("range-analyze", ("analyze",), "--max-batch-size", INT),
    *_range("range-analyze", ("analyze",), "--seed", {"negative": "-1", "huge": str(2**40)}),
    *_range("range-analyze", ("analyze",), "--block-sizes", {"zero": "0", "huge": "100000"}),
    Case("range-analyze-batch-size-zero", ("analyze", "--batch-size", "0"), 2, "--batch-size must be at least 1"),
    Case("range-analyze-batch-size-text", ("analyze", "--batch-size", "many"), 2,
         "--batch-size must be 'auto' or a positive integer"),
    Case("range-analyze-samples-text", ("analyze", "--samples", "abc"), 2, "Invalid value for '--samples'"),
    Case("range-analyze-block-sizes-text", ("analyze", "--block-sizes", "abc"), 2,
         "--block-sizes takes comma-separated integers"),
    Case("range-analyze-block-sizes-empty-item", ("analyze", "--block-sizes", "1,,2"), 2,
         "--block-sizes takes comma-separated integers"),
    Case("range-analyze-block-sizes-over-layers", ("analyze", "--model", "{tiny}", "--block-sizes", "1,64", "--device",
                                                   "cpu"), 2, "--block-sizes 64 exceeds the model's 4 layers"),
    Case("range-analyze-seq-len-over-context", ("analyze", "--model", "{tiny}", "--seq-len", "1000", "--block-sizes",
                                                "1", "--device", "cpu"),
         2, "--seq-len 1000 is longer than the model's context (128 positions)"),
    Case("range-analyze-dtype", ("analyze", "--dtype", "fp8"), 2, "unknown --dtype 'fp8'"),
    Case("range-analyze-device-unknown", ("analyze", "--device", "foo"), 2, "unknown --device 'foo'"),
    Case("range-analyze-device-meta", ("analyze", "--device", "meta"), 2, "--device meta holds shapes but no numbers"),
    Case("range-analyze-random-init-meta", ("analyze", "--random-init", "--device", "meta"), 2,
         "--device meta holds shapes but no numbers"),
    Case("range-analyze-device-cuda", ("analyze", "--model", "{tiny}", "--device", "cuda:7"), 2, "device 'cuda:7'",
         skip=_cuda),
    Case("range-analyze-device-map-unknown", ("analyze", "--device-map", "balanced"), 2,
         "unknown --device-map 'balanced'"),
    Case("range-analyze-device-map-no-accelerate", ("analyze", "--model", "{tiny}", "--device-map", "auto"), 2,
         "--device-map needs accelerate: pip install 'minitron-lab[gpu]'", env=_without("accelerate")),

    # --- bench -------------------------------------------------------------------------------------------
    *_range("range-bench", ("bench",), "--seq-len", {"zero": "0", "negative": "-5"}),
    *_range("range-bench", ("bench",), "--steps", INT),
    *_range("range-bench", ("bench",), "--warmup", {"negative": "-1"}),
    *_range("range-bench", ("bench",), "--max-batch-size", {"zero": "0"}),
    Case("range-bench-batch-size-zero", ("bench", "--batch-size", "0"), 2, "--batch-size must be at least 1"),
    Case("range-bench-seq-len-over-context", (*BENCH_TINY, "--seq-len", "100000"), 2,
         "--seq-len 100000 is longer than the model's context (128 positions)"),
    Case("range-bench-device-unknown", ("bench", "--device", "tpu"), 2, "unknown --device 'tpu'"),
    Case("range-bench-device-meta", ("bench", "--random-init", "--device", "meta"), 2, "--device meta holds shapes"),
    Case("range-bench-memory", ("bench", "--model", "15B", "--random-init", "--device", "cpu", "--dtype", "float32"),
         2, "needs 58.2 GiB on cpu but only", skip=_big_memory),

    # --- distill -------------------------------------------------------------------------------------------
    *_range("range-distill", DISTILL, "--steps", INT),
    *_range("range-distill", DISTILL, "--seq-len", {"zero": "0", "one": "1"}),
    *_range("range-distill", DISTILL, "--batch-size", INT),
    *_range("range-distill", DISTILL, "--grad-accum", INT),
    *_range("range-distill", DISTILL, "--lr", {"negative": "-0.001", "zero": "0", "nan": "nan", "inf": "inf",
                                               "above-one": "2"}),
    *_range("range-distill", DISTILL, "--min-lr", {"negative": "-1e-5", "nan": "nan"}),
    *_range("range-distill", DISTILL, "--warmup", {"negative": "-1"}),
    *_range("range-distill", DISTILL, "--kd-weight", {"negative": "-1", "inf": "inf"}),
    *_range("range-distill", DISTILL, "--clm-weight", {"negative": "-0.5"}),
    *_range("range-distill", DISTILL, "--eval-every", {"negative": "-1"}),
    *_range("range-distill", DISTILL, "--eval-samples", INT),
    *_range("range-distill", DISTILL, "--checkpoint-every", {"negative": "-1"}),
    *_range("range-distill", DISTILL, "--seed", {"negative": "-1"}),
    *_range("range-distill", DISTILL, "--data-seed", {"negative": "-1"}),
    Case("range-distill-min-lr-above-lr", (*DISTILL, "--lr", "0.001", "--min-lr", "0.01"), 2,
         "--min-lr 0.01 is above --lr 0.001"),
    Case("range-distill-no-loss", (*DISTILL, "--kd-weight", "0", "--clm-weight", "0"), 2,
         "--kd-weight and --clm-weight are both 0"),
    Case("range-distill-dtype", (*DISTILL, "--dtype", "int8"), 2, "unknown --dtype 'int8'"),
    Case("range-distill-device-meta", (*DISTILL, "--device", "meta"), 2, "--device meta holds shapes"),
    Case("range-distill-seq-len-over-context", (*DISTILL, "--seq-len", "1000"), 2,
         "--seq-len 1000 is longer than the model's context (128 positions)"),

    # --- prune -------------------------------------------------------------------------------------------
    Case("range-prune-no-target", (*PRUNE_TINY, "--out", "{w}/out"), 2, "nothing to prune"),
    *_range("range-prune", PRUNE_TINY, "--layers", INT, ("--out", "{w}/out")),
    *_range("range-prune", PRUNE_TINY, "--ffn", INT, ("--out", "{w}/out")),
    *_range("range-prune", PRUNE_TINY, "--heads", INT, ("--out", "{w}/out")),
    *_range("range-prune", PRUNE_TINY, "--hidden", INT, ("--out", "{w}/out")),
    *_range("range-prune", PRUNE_TINY, "--samples", INT, ("--out", "{w}/out", "--layers", "3")),
    *_range("range-prune", PRUNE_TINY, "--eval-samples", INT, ("--out", "{w}/out", "--layers", "3")),
    *_range("range-prune", PRUNE_TINY, "--seq-len", {"zero": "0"}, ("--out", "{w}/out", "--layers", "3")),
    *_range("range-prune", PRUNE_TINY, "--batch-size", INT, ("--out", "{w}/out", "--layers", "3")),
    *_range("range-prune", PRUNE_TINY, "--seed", {"negative": "-1"}, ("--out", "{w}/out", "--layers", "3")),
    Case("range-prune-layers-over-teacher", (*PRUNE_TINY, "--out", "{w}/out", "--layers", "99"), 2,
         "--layers 99 exceeds the teacher's 4"),
    Case("range-prune-heads-not-multiple", (*PRUNE_TINY, "--out", "{w}/out", "--heads", "3"), 2,
         "multiple of the 2 kv heads"),
    Case("range-prune-keeps-everything", (*PRUNE_TINY, "--out", "{w}/out", "--hidden", "32", "--ffn", "40",
                                          "--heads", "4", "--layers", "4"), 2, "nothing would be pruned"),
    Case("range-prune-aggregation", (*PRUNE_TINY, "--out", "{w}/out", "--layers", "3", "--aggregation", "foo_bar"), 2,
         "unknown --aggregation 'foo_bar'; choose from mean_mean"),
    Case("range-prune-depth-metric", (*PRUNE_TINY, "--out", "{w}/out", "--layers", "3", "--depth-metric", "ppl"), 2,
         "unknown --depth-metric 'ppl'; choose from bi, drop-loss"),
    Case("range-prune-target-unknown", ("prune", "--model", "15B", "--target", "99B", "--dry-run", "--out", "{w}/o"),
         2, "unknown model '99B'"),
    Case("range-prune-target-other-family", ("prune", "--model", "smollm2-135m", "--target", "8B", "--dry-run",
                                             "--out", "{w}/o"), 2, "differ from the teacher's"),
    Case("range-prune-device-meta", (*PRUNE_TINY, "--out", "{w}/out", "--layers", "3", "--device", "meta"), 2,
         "--device meta holds shapes"),
    Case("range-prune-missing-out", ("prune", "--layers", "3"), 2, "Missing option '--out'"),
    Case("range-prune-memory", ("prune", "--model", "15B", "--random-init", "--dtype", "float32", "--device", "cpu",
                                "--layers", "30", "--no-eval", "--out", "{w}/o"), 2, "needs 58.2 GiB on cpu",
         skip=_big_memory),

    # --- search ------------------------------------------------------------------------------------------
    Case("range-search-params-above-teacher", ("search", "--params", "100B"), 2,
         "--params 100B is not below the teacher's 15.629B parameters"),
    Case("range-search-params-zero", ("search", "--params", "0"), 2, "--params must be"),
    Case("range-search-params-text", ("search", "--params", "lots"), 2, "--params 'lots' is not a parameter count"),
    Case("range-search-params-negative", ("search", "--params", "-5B"), 2, "is not a parameter count"),
    Case("range-search-no-candidates", ("search", "--params", "1B"), 1,
         "no candidate of the 4B search space lies in [0.95B, 1.05B] around 1B: its grid spans"),
    *_range("range-search", ("search",), "--tolerance", {"negative": "-0.1", "one": "1", "nan": "nan"}),
    *_range("range-search", ("search",), "--eval-samples", {"zero": "0"}),
    *_range("range-search", ("search",), "--seq-len", {"zero": "0"}),
    Case("range-search-rank-without-run", ("search", "--rank"), 2, "--rank needs --run DIR"),
    Case("range-search-aggregation", ("search", "--aggregation", "max_max"), 2, "unknown --aggregation 'max_max'"),

    # --- perplexity (issue 11) ------------------------------------------------------------------------------------
    *_range("range-perplexity", ("perplexity",), "--seq-len", {"zero": "0", "one": "1"}),
    *_range("range-perplexity", ("perplexity",), "--stride", INT),
    *_range("range-perplexity", ("perplexity",), "--max-chars", INT),
    *_range("range-perplexity", ("perplexity",), "--batch-size", INT),
    Case("range-perplexity-stride-over-seq-len", ("perplexity", "--seq-len", "16", "--stride", "32"), 2,
         "--stride must be in [1, --seq-len 16], got 32"),
    Case("range-perplexity-protocol", ("perplexity", "--protocol", "nope"), 2,
         "unknown --protocol 'nope'; choose from hf-stride, lm-eval"),
    Case("range-perplexity-seq-len-over-context", (*PPL_TINY[:5], "--seq-len", "1000"), 2,
         "--seq-len 1000 is longer than the model's context (128 positions)"),
    Case("data-perplexity-empty-file", (*PPL_TINY, "--data", "{w}/t.txt"), 2, "holds no text",
         plant=P.text_file("t.txt", b"")),
    Case("data-perplexity-binary", (*PPL_TINY, "--data", "{w}/t.txt"), 2, "a binary file (NUL bytes), not UTF-8 text",
         plant=P.text_file("t.txt", bytes(range(256)) * 10)),
    Case("data-perplexity-too-short", (*PPL_TINY, "--protocol", "hf-stride", "--data", "{w}/t.txt"), 2,
         "no token was scored: the text is too short", plant=P.text_file("t.txt", b"A")),
    Case("out-perplexity-is-a-file", (*PPL_TINY, "--out", "{w}/ppl.json"), 2, "ppl.json is a file",
         plant=lambda w, a: P.user_file(w / "ppl.json")),
    Case("out-perplexity-foreign-dir", (*PPL_TINY, "--out", "{w}/mine"), 2, "mine is not empty and was not made",
         plant=lambda w, a: P.user_file(w / "mine/notes.txt")),
    Case("out-perplexity-force-keeps-other-files", (*PPL_TINY, "--out", "{w}/mine", "--force"), 0, "",
         plant=lambda w, a: P.user_file(w / "mine/notes.txt"), writes=("mine/",)),

    # --- search: ranking and its output (issue 11) ----------------------------------------------------------------
    *_range("range-search", ("search",), "--retrain-steps", {"negative": "-1"}),
    *_range("range-search", ("search",), "--batch-size", INT),
    *_range("range-search", ("search",), "--lr", {"zero": "0", "nan": "nan"}),
    *_range("range-search", ("search",), "--seed", {"negative": "-1"}),
    Case("range-search-depth-metric", ("search", "--depth-metric", "ppl"), 2, "unknown --depth-metric 'ppl'"),
    Case("usage-search-rank-without-run", ("search", "--rank"), 2, "--rank needs --run DIR"),
    Case("run-search-rank-damaged", ("search", "--model", "{tiny}", "--params", "1.3e6", "--tolerance", "0.3",
                                     "--rank", "--run", "{w}/run",
                                     "--retrain-steps", "0", "--device", "cpu"), 2, "corrupt run metrics file",
         plant=P.run_file("metrics.json", lambda w, b: b"{")),
    Case("out-search-is-a-file", ("search", "--out", "{w}/search.json"), 2, "search.json is a file",
         plant=lambda w, a: P.user_file(w / "search.json")),
    Case("out-search-foreign-dir", ("search", "--out", "{w}/mine"), 2, "mine is not empty and was not made",
         plant=lambda w, a: P.user_file(w / "mine/notes.txt")),
    Case("out-search-unwritable", ("search", "--out", "/proc/minitron-lab-test"), 2, "cannot write to /proc"),
    Case("out-search-force-keeps-other-files", ("search", "--out", "{w}/mine", "--force"), 0, "",
         plant=lambda w, a: P.user_file(w / "mine/notes.txt"), writes=("mine/",)),

    # --- prune: selection windows and contiguous depth (issues 11, 12) -----------------------------------------
    *_range("range-prune", PRUNE_TINY, "--select-samples", INT, ("--out", "{w}/out", "--layers", "3")),
    Case("range-prune-depth-block-not-analysed", ("prune", "--model", "{tiny}", "--run", "{run}", "--layers", "1",
                                                  "--depth-metric", "block", "--no-eval", "--device", "cpu",
                                                  "--out", "{w}/o"), 2, "block"),

    # --- analyze --bootstrap, --compile (issues 10, 14) -------------------------------------------------------
    *_range("range-analyze", ("analyze",), "--bootstrap", {"negative": "-1", "huge": "100000000"}),
    Case("range-analyze-bootstrap-one-sample", (*ANALYZE_TINY, "--samples", "1", "--bootstrap", "5"), 2,
         "--bootstrap resamples the calibration windows: it needs --samples of at least 2"),
    Case("range-analyze-compile", ("analyze", "--compile", "fast"), 2, "unknown --compile 'fast'"),
    Case("range-bench-compile", ("bench", "--compile", "fast"), 2, "unknown --compile 'fast'"),

    # --- evaluate (issue 14) -----------------------------------------------------------------------------------
    *_range("range-evaluate", ("evaluate",), "--num-fewshot", {"negative": "-1", "huge": "5000"}),
    *_range("range-evaluate", ("evaluate",), "--limit", INT),
    *_range("range-evaluate", ("evaluate",), "--batch-size", INT),
    Case("usage-evaluate-unknown-task", (*EVAL_TINY, "--tasks", "no_such_task_anywhere", "--out", "{w}/e"), 2,
         "no_such_task_anywhere"),
    Case("usage-evaluate-no-tasks", ("evaluate", "--tasks", ","), 2, "--tasks is empty"),
    Case("usage-evaluate-paper-settings-and-shots", ("evaluate", "--tasks", "arc_c", "--paper-settings",
                                                     "--num-fewshot", "3"), 2, "drop --num-fewshot"),
    Case("usage-evaluate-code-without-permission", ("evaluate", "--tasks", "mbpp"), 2, "--allow-code-execution"),
    Case("usage-evaluate-task-file-missing", ("evaluate", "--tasks", "{w}/mine.yaml"), 2, "does not exist"),
    Case("usage-evaluate-without-extra", (*EVAL_TINY, "--tasks", "minitron_facts", "--out", "{w}/e"), 2,
         "pip install 'minitron-lab[eval]'", env=_without("lm_eval")),
    Case("out-evaluate-is-a-file", (*EVAL_TINY, "--out", "{w}/eval.json"), 2, "eval.json is a file",
         plant=lambda w, a: P.user_file(w / "eval.json")),
    Case("out-evaluate-foreign-dir", (*EVAL_TINY, "--out", "{w}/mine"), 2, "mine is not empty and was not made",
         plant=lambda w, a: P.user_file(w / "mine/notes.txt")),
    Case("out-evaluate-runs-is-a-file", EVAL_TINY, 2, "cannot write to runs: it is a file",
         plant=lambda w, a: P.user_file(w / "runs")),
    Case("out-evaluate-force-keeps-other-files", (*EVAL_TINY, "--out", "{w}/mine", "--force"), 0, "",
         plant=lambda w, a: P.user_file(w / "mine/notes.txt"), writes=("mine/",)),
    Case("run-card-damaged-eval-skipped", ("card", "--model", "smollm2-135m", "--runs", "{w}/runs", "--out",
                                           "{w}/card"), 0, "skipping a damaged evaluate run",
         plant=P.eval_run("{ damaged"), writes=("card/",)),
    Case("run-card-eval-nan-skipped", ("card", "--model", "smollm2-135m", "--runs", "{w}/runs", "--out", "{w}/card"),
         0, "NaN is not a JSON number",
         plant=P.eval_run('{"model": {"name": "smollm2-135m"}, "tasks": {"t": {"value": NaN}}, "settings": {}}'),
         writes=("card/",)),
    Case("run-card-eval-incomplete-skipped", ("card", "--model", "smollm2-135m", "--runs", "{w}/runs", "--out",
                                              "{w}/card"), 0, "a task entry is incomplete",
         plant=P.eval_run('{"model": {"name": "smollm2-135m"}, "tasks": {"t": {"value": 0.5}}, "settings": {}}'),
         writes=("card/",)),

    # --- compare (issue 14) ------------------------------------------------------------------------------------
    *_range("range-compare", COMPARE_TINY, "--seq-len", {"one": "1"}),
    *_range("range-compare", COMPARE_TINY, "--eval-samples", {"zero": "0"}),
    *_range("range-compare", COMPARE_TINY, "--seed", {"negative": "-1"}),
    *_range("range-compare", COMPARE_TINY, "--batch-size", {"zero": "0"}),
    *_range("range-compare", COMPARE_TINY, "--cka-tokens", {"one": "1", "huge": "1000000"}),
    *_range("range-compare", COMPARE_TINY, "--worst", {"negative": "-1"}),
    Case("model-compare-other-vocabulary", (*COMPARE_TINY[:3], "--teacher", "{w}/other", *COMPARE_TINY[5:],
                                            "--out", "{w}/c"), 2, "they must share a tokenizer",
         plant=P.other_vocab()),
    Case("model-compare-no-teacher", ("compare", "--student", "{tiny}"), 2, "names no teacher (no prune_recipe.json)"),
    Case("model-compare-teacher-missing", ("compare", "--student", "{tiny}", "--teacher", "./gone"), 2,
         "./gone: no such file or directory"),
    Case("model-compare-recipe-teacher-missing", ("compare", "--student", "{m}", "--device", "cpu"), 2,
         "no such file or directory", plant=P.student_record("prune_recipe.json", '{"teacher": "./gone"}')),
    Case("card-compare-recipe-not-json", ("compare", "--student", "{m}"), 2,
         "prune_recipe.json: corrupt pruning recipe: not valid JSON", plant=P.student_record("prune_recipe.json", "{")),
    Case("card-compare-distill-record-nan", ("compare", "--student", "{m}", "--teacher", "{tiny}"), 2,
         "distill.json: corrupt distillation record: NaN is not a JSON number",
         plant=P.student_record("distill.json", '{"data": {"loss": NaN}}')),
    Case("out-compare-is-a-file", (*COMPARE_TINY, "--out", "{w}/c.json"), 2, "c.json is a file",
         plant=lambda w, a: P.user_file(w / "c.json")),
    Case("out-compare-foreign-dir", (*COMPARE_TINY, "--out", "{w}/mine"), 2, "mine is not empty and was not made",
         plant=lambda w, a: P.user_file(w / "mine/notes.txt")),
    Case("out-compare-default-runs-is-a-file", COMPARE_TINY, 2, "runs is a file",
         plant=lambda w, a: P.user_file(w / "runs")),
    Case("out-compare-with-itself-strict-json", (*COMPARE_TINY, "--out", "{w}/c"), 0, "", writes=("c/",)),

    # --- experiment (issue 12) -----------------------------------------------------------------------------------
    *_range("range-experiment", ("experiment", "aggregation", "--small"), "--seeds", SAMPLE),
    Case("usage-experiment-unknown", ("experiment", "nope", "--small"), 2, "unknown experiment 'nope'"),
    Case("usage-experiment-no-name", ("experiment",), 2, "name an experiment"),
    Case("out-experiment-foreign-dir", ("experiment", "aggregation", "--small", "--out", "{w}/mine", "--runs",
                                        "{w}/runs"), 2, "mine is not empty and was not made",
         plant=lambda w, a: P.user_file(w / "mine/thesis.tex")),
    Case("out-experiment-is-a-file", ("experiment", "aggregation", "--small", "--out", "{w}/res.json", "--runs",
                                      "{w}/runs"), 2, "res.json is a file", plant=lambda w, a: P.user_file(w / "res.json")),
    Case("out-experiment-runs-is-a-file", ("experiment", "aggregation", "--small", "--out", "{w}/res", "--runs",
                                           "{w}/runs"), 2, "cannot write to", plant=lambda w, a: P.user_file(w / "runs")),
    Case("run-experiment-report-not-json", REPORT, 2, "aggregation.json: corrupt experiment result: not valid JSON",
         plant=P.experiment_results({"aggregation.json": '{"experiment": "aggr'})),
    Case("run-experiment-report-nan", REPORT, 2, "NaN is not a JSON number",
         plant=P.experiment_results({"aggregation.json": '{"experiment": "aggregation", "loss": NaN}'})),
    Case("run-experiment-report-unknown", REPORT, 2, "not an experiment result (no known 'experiment' name",
         plant=P.experiment_results({"x.json": '{"experiment": "nope"}'})),
    Case("run-experiment-report-incomplete", REPORT, 2, "aggregation.json: not a complete experiment result",
         plant=P.experiment_results({"aggregation.json": '{"experiment": "aggregation"}'})),
    Case("run-experiment-report-not-utf8", REPORT, 2, "not UTF-8",
         plant=lambda w, a: (P.experiment_results({})(w, a), (w / "README.md").write_bytes(b"\xff\xfe\x00"))),
    Case("run-experiment-report-no-markers", REPORT, 2, "README has no results markers",
         plant=P.experiment_results({}, readme="# Notes\n")),
    Case("run-experiment-report-no-readme", REPORT, 2, "cannot read the README",
         plant=lambda w, a: (w / "res").mkdir()),

    # --- the command line itself ---------------------------------------------------------------------------
    Case("usage-unknown-command", ("nonesuch",), 2, "No such command 'nonesuch'"),
    Case("usage-unknown-option", ("analyze", "--sample", "3"), 2, "No such option: --sample"),
    Case("usage-card-format", ("card", "--model", "8B", "--format", "pdf"), 2, "unknown --format 'pdf'"),
    Case("usage-card-neither", ("card",), 2, "pass exactly one of --model M or --all"),
    Case("usage-card-both", ("card", "--model", "8B", "--all"), 2, "pass exactly one of --model M or --all"),
    Case("usage-card-unknown-model", ("card", "--model", "nope"), 2, "unknown model 'nope'"),

    # --- models that cannot be loaded: named, never a traceback -----------------------------------------------
    Case("model-unknown-name", ("analyze", "--model", "nope"), 2, "unknown model 'nope'; registry names"),
    Case("model-missing-relative-path", ("analyze", "--model", "./models/mine"), 2,
         "./models/mine: no such file or directory"),
    Case("model-missing-absolute-path", ("analyze", "--model", "{w}/gone"), 2, "gone: no such file or directory"),
    Case("model-missing-gguf", ("analyze", "--model", "model.gguf"), 2, "model.gguf: no such file or directory"),
    Case("model-hub-id-not-cached", ("analyze", "--model", "someone/some-model"), 2,
         "get them with `hf download someone/some-model`", env=_offline),
    Case("model-a-text-file", ("analyze", "--model", "{w}/notes.txt"), 2, "a file that is not .gguf",
         plant=P.text_file("notes.txt", b"hello")),
    Case("model-no-config", ANALYZE_M, 2, "not a model directory (no config.json)", plant=P.no_config),
    Case("model-config-not-json", ANALYZE_M, 2, "config.json: corrupt model config: not valid JSON",
         plant=P.config("{ this is not json")),
    Case("model-config-not-utf8", ANALYZE_M, 2, "config.json: corrupt model config: not UTF-8",
         plant=P.config(b"\xff\xfe\x00{")),
    Case("model-config-not-object", ANALYZE_M, 2, "no 'model_type'", plant=P.config("[1, 2, 3]")),
    Case("model-config-no-model-type", ANALYZE_M, 2, "no 'model_type'", plant=P.config('{"hidden_size": 32}')),
    Case("model-config-unknown-type", ANALYZE_M, 2, "the model could not be loaded",
         plant=P.config_patch(model_type="no-such-architecture")),
    Case("model-config-wrong-shape", ANALYZE_M, 2, "the model could not be loaded",
         plant=P.config_patch(hidden_size=64)),
    Case("model-weights-truncated", ANALYZE_M, 2, "corrupt safetensors file",
         plant=P.weights(lambda w, b: b[: len(b) // 2])),
    Case("model-weights-random-bytes", ANALYZE_M, 2, "corrupt safetensors file",
         plant=P.weights(lambda w, b: bytes(range(256)) * 64)),
    Case("model-weights-empty", ANALYZE_M, 2, "shorter than its 8-byte header", plant=P.weights(lambda w, b: b"")),
    Case("model-weights-header-only", ANALYZE_M, 2, "corrupt safetensors file",
         plant=P.weights(lambda w, b: b[: 8 + int.from_bytes(b[:8], "little")])),
    Case("model-weights-missing", ANALYZE_M, 2, "no weight files", plant=P.no_weights),
    Case("model-only-pickle-weights", ANALYZE_M, 2, "only pickle (.bin) weights found; pass --allow-pickle",
         plant=P.only_bin(evil=False)),
    Case("model-tokenizer-garbage", ANALYZE_M, 2, "the tokenizer could not be loaded", plant=P.tokenizer_garbage),
    Case("model-gguf-is-text", ("analyze", "--model", "{w}/model.gguf"), 2, "not a GGUF file",
         plant=P.gguf(lambda w, a: b"just some text that is not a model\n" * 40)),
    Case("model-gguf-truncated", ("analyze", "--model", "{w}/model.gguf"), 2, "corrupt",
         plant=P.gguf(lambda w, a: a.gguf.read_bytes()[:4096])),
    Case("model-gguf-magic-only", ("analyze", "--model", "{w}/model.gguf"), 2, "truncated",
         plant=P.gguf(lambda w, a: b"GGUF\x03\x00")),

    # --- text that is not text ------------------------------------------------------------------------------
    Case("data-missing-file", (*ANALYZE_TINY, "--data", "./corpus.txt"), 2, "--data ./corpus.txt: no such file"),
    Case("data-binary", (*ANALYZE_TINY, "--data", "{w}/corpus.txt"), 2, "a binary file (NUL bytes), not UTF-8 text",
         plant=P.text_file("corpus.txt", bytes(range(256)) * 100)),
    Case("data-latin1-txt", (*ANALYZE_TINY, "--data", "{w}/corpus.txt"), 2, "not UTF-8 text (byte 0xe9",
         plant=P.text_file("corpus.txt", "caf\u00e9 au lait\n".encode("latin-1") * 50)),
    Case("data-latin1-jsonl", (*ANALYZE_TINY, "--data", "{w}/corpus.jsonl"), 2, "corpus.jsonl:2: not UTF-8 text",
         plant=P.text_file("corpus.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n')),
    Case("data-jsonl-not-json", (*ANALYZE_TINY, "--data", "{w}/corpus.jsonl"), 2,
         "corpus.jsonl:1: not a JSON object with a 'text' field", plant=P.text_file("corpus.jsonl", b"plain text\n")),
    Case("data-jsonl-number", (*ANALYZE_TINY, "--data", "{w}/corpus.jsonl"), 2, "the 'text' field is int, not text",
         plant=P.text_file("corpus.jsonl", b'{"text": 42}\n')),
    Case("data-empty-file", (*ANALYZE_TINY, "--data", "{w}/corpus.txt"), 2, "holds no text",
         plant=P.text_file("corpus.txt", b"\n\n  \n")),
    Case("data-folder-without-text", (*ANALYZE_TINY, "--data", "{w}/texts"), 2, "no .txt or .jsonl files in the folder",
         plant=P.text_file("texts/image.png", b"\x89PNG")),
    Case("data-too-short", (*ANALYZE_TINY, "--data", "{w}/corpus.txt"), 2, "windows of 16 tokens",
         plant=P.text_file("corpus.txt", b"A short text.\n")),
    Case("data-hf-without-extra", (*ANALYZE_TINY, "--data", "someone/corpus"), 2,
         "pip install 'minitron-lab[data]'", env=_without("datasets")),

    # --- outputs: never lose a file, never write into someone else's directory -------------------------------
    Case("out-analyze-foreign-dir", (*ANALYZE_TINY, "--out", "{w}/thesis"), 2,
         "thesis is not empty and was not made by minitron-lab", plant=lambda w, a: P.user_file(w / "thesis/thesis.tex")),
    Case("out-analyze-foreign-dir-force", (*ANALYZE_TINY, "--out", "{w}/thesis", "--force"), 0, "",
         plant=lambda w, a: P.user_file(w / "thesis/thesis.tex"), writes=("thesis/",)),
    Case("out-analyze-is-a-file", (*ANALYZE_TINY, "--out", "{w}/thesis.tex"), 2, "thesis.tex is a file",
         plant=lambda w, a: P.user_file(w / "thesis.tex")),
    Case("out-analyze-is-a-file-force", (*ANALYZE_TINY, "--out", "{w}/thesis.tex", "--force"), 2,
         "thesis.tex is a file", plant=lambda w, a: P.user_file(w / "thesis.tex")),
    Case("out-analyze-unwritable", (*ANALYZE_TINY, "--out", "/proc/minitron-lab-test"), 2, "cannot write to /proc"),
    Case("out-analyze-under-a-file", (*ANALYZE_TINY, "--out", "{w}/notes.txt/run"), 2, "is a file, not a directory",
         plant=lambda w, a: P.user_file(w / "notes.txt")),
    Case("out-analyze-runs-is-a-file", ANALYZE_TINY, 2, "cannot write to runs: it is a file",
         plant=lambda w, a: P.user_file(w / "runs")),
    Case("out-analyze-default-runs", ANALYZE_TINY, 0, "", writes=("runs/",)),
    Case("out-prune-foreign-dir", (*PRUNE_TINY, "--layers", "3", "--out", "{w}/mine"), 2,
         "mine is not empty and was not made by minitron-lab", plant=lambda w, a: P.user_file(w / "mine/notes.md")),
    Case("out-prune-foreign-dir-force", (*PRUNE_TINY, "--layers", "3", "--out", "{w}/mine", "--force"), 0, "",
         plant=lambda w, a: P.user_file(w / "mine/notes.md"), writes=("mine/", "runs/")),
    Case("out-prune-is-a-file", (*PRUNE_TINY, "--layers", "3", "--out", "{w}/mine"), 2, "mine is a file",
         plant=lambda w, a: P.user_file(w / "mine")),
    Case("out-prune-dry-run-unwritable", ("prune", "--model", "15B", "--target", "8B", "--dry-run", "--out",
                                          "/proc/minitron-lab-test"), 2, "cannot write to /proc"),
    Case("out-distill-foreign-dir", (*DISTILL, "--out", "{w}/mine"), 2, "mine is not empty and was not made",
         plant=lambda w, a: P.user_file(w / "mine/model/notes.txt")),
    Case("out-distill-foreign-dir-force", (*DISTILL, "--out", "{w}/mine", "--force"), 0, "",
         plant=lambda w, a: P.user_file(w / "mine/model/notes.txt"), writes=("mine/",)),
    Case("out-distill-is-a-file", (*DISTILL, "--out", "{w}/mine"), 2, "mine is a file",
         plant=lambda w, a: P.user_file(w / "mine")),
    Case("out-distill-default-unwritable", DISTILL, 2, "runs is a file, not a directory",
         plant=lambda w, a: P.user_file(w / "runs")),
    Case("out-distill-checkpoint-without-resume", (*DISTILL, "--out", "{w}/out"), 2,
         "already holds a training checkpoint; pass --resume",
         plant=P.distill_out({"checkpoint/trainer.json": lambda w: b"{}"})),
    Case("out-card-is-a-file", ("card", "--model", "8B", "--out", "{w}/card.md"), 2, "card.md is a file",
         plant=lambda w, a: P.user_file(w / "card.md")),
    Case("out-card-foreign-readme", ("card", "--model", "8B", "--out", "{w}/docs"), 2,
         "docs is not empty and was not made by minitron-lab", plant=lambda w, a: P.user_file(w / "docs/README.md")),
    Case("out-card-foreign-readme-in-our-dir", ("card", "--model", "8B", "--out", "{w}/docs"), 2,
         "README.md was not made by minitron-lab; pass --force",
         plant=lambda w, a: (P.user_file(w / "docs/README.md"), P.user_file(
             w / "docs/.minitron-lab.json", '{"tool": "minitron-lab", "command": "figures", "files": []}'))),
    Case("out-card-model-dir-foreign", ("card", "--model", "{m}"), 2, "not empty and was not made by minitron-lab",
         plant=lambda w, a: (P.model_copy(w, a), P.user_file(w / "m/README.md"))),
    Case("out-card-force-keeps-other-files", ("card", "--model", "8B", "--out", "{w}/docs", "--force"), 0, "",
         plant=lambda w, a: P.user_file(w / "docs/notes.txt"), writes=("docs/",)),
    Case("out-card-unwritable", ("card", "--model", "8B", "--out", "/proc/minitron-lab-test"), 2, "cannot write to /proc"),
    Case("out-figures-is-a-file", ("figures", "--out", "{w}/fig.png"), 2, "fig.png is a file",
         plant=lambda w, a: P.user_file(w / "fig.png")),
    Case("out-figures-foreign-dir", ("figures", "--out", "{w}/plots"), 2, "plots is not empty and was not made",
         plant=lambda w, a: P.user_file(w / "plots/mine.png")),
    Case("out-figures-default-foreign", ("figures",), 2, "figures/out is not empty and was not made",
         plant=lambda w, a: P.user_file(w / "figures/out/mine.png")),
    Case("out-figures-run-foreign-out", ("figures", "--run", "{run}", "--out", "{w}/plots"), 2,
         "plots is not empty and was not made", plant=lambda w, a: P.user_file(w / "plots/keep.svg")),
    Case("out-figures-unwritable", ("figures", "--out", "/proc/minitron-lab-test"), 2, "cannot write to /proc"),
    Case("out-figures-force-keeps-other-files", ("figures", "--out", "{w}/plots", "--force"), 0, "",
         plant=lambda w, a: P.user_file(w / "plots/mine.png"), writes=("plots/",)),

    # --- damaged runs, named; a damaged run among others is skipped with a warning -------------------------
    Case("run-missing", ("figures", "--run", "{w}/nope"), 2, "nope: no such run directory"),
    Case("run-is-a-file", ("figures", "--run", "{w}/notes.txt"), 2, "no such run directory",
         plant=lambda w, a: P.user_file(w / "notes.txt")),
    Case("run-not-a-run", ("figures", "--run", "{w}/dir"), 2, "not an analysis run",
         plant=lambda w, a: P.user_file(w / "dir/a.txt")),
    Case("run-metrics-not-json", ("figures", "--run", "{w}/run"), 2, "metrics.json: corrupt run metrics file: not valid JSON",
         plant=P.run_file("metrics.json", lambda w, b: b[: len(b) // 2])),
    Case("run-metrics-nan", ("figures", "--run", "{w}/run"), 2, "NaN is not a JSON number",
         plant=P.run_metrics(lambda d: '{"model": {"name": "x"}, "eval": {"loss": NaN}}')),
    Case("run-metrics-no-model", ("figures", "--run", "{w}/run"), 2, "corrupt run metrics file: no 'model' section",
         plant=P.run_metrics(lambda d: "[]")),
    Case("run-tensors-garbage", ("figures", "--run", "{w}/run"), 2, "importance.safetensors: corrupt importance file",
         plant=P.run_file("importance.safetensors", lambda w, b: b"\x00" * 100)),
    Case("run-tensors-truncated", ("figures", "--run", "{w}/run"), 2, "corrupt importance file",
         plant=P.run_file("importance.safetensors", lambda w, b: b[: len(b) - 100])),
    Case("run-tensors-pickle", ("figures", "--run", "{w}/run"), 2, "corrupt importance file",
         plant=P.run_file("importance.safetensors", lambda w, b: P.evil_torch(w))),
    Case("run-tensors-missing", ("figures", "--run", "{w}/run"), 2, "corrupt importance file: no heads",
         plant=P.run_tensors(lambda t: {k: v for k, v in t.items() if not k.startswith("heads")})),
    Case("run-tensors-nan", ("figures", "--run", "{w}/run"), 2, "'block_importance' holds NaN",
         plant=P.run_tensors(lambda t: t | {"block_importance": t["block_importance"] * float("nan")})),
    Case("run-prune-damaged", (*PRUNE_TINY, "--layers", "3", "--run", "{w}/run", "--out", "{w}/o"), 2,
         "corrupt run metrics file", plant=P.run_file("metrics.json", lambda w, b: b"{")),
    Case("run-prune-other-model", ("prune", "--model", "{tiny}", "--layers", "3", "--run", "{w}/run", "--no-eval",
                                   "--device", "cpu", "--out", "{w}/o"), 2, "was the analysis run made on another model",
         plant=lambda w, a: __import__("tests.helpers", fromlist=["x"]).synthetic_run(w / "run")),
    Case("run-prune-missing", (*PRUNE_TINY, "--layers", "3", "--run", "{w}/nope", "--out", "{w}/o"), 2,
         "no such run directory"),
    Case("run-card-damaged-skipped", ("card", "--model", "smollm2-135m", "--runs", "{w}/runs", "--out", "{w}/card"), 0,
         "skipping a damaged analysis run", plant=P.registry_run(damaged=True), writes=("card/",)),
    Case("run-card-without-sensitivity", ("card", "--model", "smollm2-135m", "--runs", "{w}/runs", "--out", "{w}/card"),
         0, "", plant=P.registry_run(without_sensitivity=True), writes=("card/",)),
    Case("run-analyze-damaged-cache-recomputed", (*ANALYZE_TINY, "--out", "{w}/out"), 0, "",
         plant=lambda w, a: (P.user_file(w / "out/metrics.json", "{ damaged"), P.user_file(
             w / "out/.minitron-lab.json", '{"tool": "minitron-lab", "command": "analyze", "files": ["metrics.json"]}')),
         writes=("out/",)),

    # --- checkpoints: damaged ones named; pickles never loaded ---------------------------------------------------
    Case("ckpt-analyze-progress-garbage", (*ANALYZE_TINY, "--out", "{w}/out", "--resume"), 2,
         "corrupt analysis checkpoint: not valid JSON",
         plant=P.analysis_checkpoint(_tiny_analysis_cfg, lambda c, w: (c / "progress.json").write_text("{x"))),
    Case("ckpt-analyze-statistics-garbage", (*ANALYZE_TINY, "--out", "{w}/out", "--resume"), 2,
         "damaged analysis checkpoint: statistics.safetensors is unreadable",
         plant=P.analysis_checkpoint(_tiny_analysis_cfg,
                                     lambda c, w: (c / "statistics.safetensors").write_bytes(b"garbage"))),
    Case("ckpt-analyze-statistics-pickle", (*ANALYZE_TINY, "--out", "{w}/out", "--resume"), 2,
         "statistics.safetensors is unreadable",
         plant=P.analysis_checkpoint(_tiny_analysis_cfg,
                                     lambda c, w: (c / "statistics.safetensors").write_bytes(P.evil_torch(w)))),
    Case("ckpt-analyze-progress-wrong-fields", (*ANALYZE_TINY, "--out", "{w}/out", "--resume"), 2,
         "progress.json does not describe a run",
         plant=P.analysis_checkpoint(_tiny_analysis_cfg, lambda c, w: (c / "progress.json").write_text('{"a": 1}'))),
    Case("ckpt-analyze-legacy-pickle-ignored", (*ANALYZE_TINY, "--out", "{w}/out", "--resume"), 0, "",
         plant=lambda w, a: (w / ".out.partial.pt").write_bytes(P.evil_torch(w)), writes=("out/",)),
    Case("ckpt-distill-legacy-pickle", (*DISTILL, "--out", "{w}/out", "--resume"), 2,
         "trainer.pt: a pickled checkpoint is never loaded",
         plant=P.distill_out({"checkpoint/trainer.pt": P.evil_torch})),
    Case("ckpt-distill-trainer-garbage", (*DISTILL, "--out", "{w}/out", "--resume"), 2,
         "trainer.json: corrupt training checkpoint: not valid JSON",
         plant=P.distill_out({"checkpoint/trainer.json": lambda w: b"{ nope"})),
    Case("ckpt-distill-tensors-pickle", (*DISTILL, "--out", "{w}/out", "--resume"), 2,
         "trainer.safetensors: corrupt training checkpoint",
         plant=P.distill_out({"checkpoint/trainer.json": lambda w: b'{"format": "minitron-lab tensorstate 1", '
                                                                   b'"state": {"step": 1}}',
                              "checkpoint/trainer.safetensors": P.evil_pickle})),
    Case("ckpt-distill-not-a-state", (*DISTILL, "--out", "{w}/out", "--resume"), 2,
         "corrupt training checkpoint: not a minitron-lab state document",
         plant=P.distill_out({"checkpoint/trainer.json": lambda w: b'{"step": 3}'})),

    # --- code execution: a pickle planted where a loader reads is refused and never runs --------------------------
    Case("exec-pickle-weights-allowed", (*ANALYZE_M, "--allow-pickle"), 2, "refused to load pickled weights",
         plant=P.only_bin(evil=True)),
    Case("exec-pickle-weights-default", ANALYZE_M, 2, "only pickle (.bin) weights found", plant=P.only_bin(evil=True)),
    Case("exec-pickle-as-safetensors", ANALYZE_M, 2, "corrupt safetensors file",
         plant=P.weights(lambda w, b: P.evil_torch(w))),
    Case("exec-pickle-as-gguf", ("analyze", "--model", "{w}/model.gguf"), 2, "not a GGUF file",
         plant=P.gguf(lambda w, a: P.evil_torch(w))),
    Case("exec-pickle-as-config", ANALYZE_M, 2, "corrupt model config", plant=lambda w, a: P.config(P.evil_pickle(w))(w, a)),
    Case("exec-pickle-as-tokenizer", ANALYZE_M, 2, "the tokenizer could not be loaded",
         plant=lambda w, a: (P.model_copy(w, a) / "tokenizer.json").write_bytes(P.evil_pickle(w))),
    Case("exec-pickle-as-data", (*ANALYZE_TINY, "--data", "{w}/corpus.txt"), 2, "not UTF-8 text",
         plant=lambda w, a: (w / "corpus.txt").write_bytes(P.evil_pickle(w))),

    # --- templates: sandboxed, and limited in time, size and work ---------------------------------------------------
    Case("tpl-missing", ("card", "--model", "8B", "--template", "{w}/none.j2", "--out", "{w}/c"), 2, "no such file"),
    Case("tpl-syntax", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2, "syntax error",
         plant=P.template("{% for x in %}")),
    Case("tpl-not-utf8", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2, "not UTF-8",
         plant=P.template(b"\xff\xfe{{ card }}")),
    Case("tpl-internals", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2,
         "refused by the sandbox", plant=P.template("{{ card.__class__.__mro__[1].__subclasses__() }}")),
    Case("tpl-range-huge", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2,
         "stopped by the sandbox's limits: range() of 1,000,000,000 items", plant=P.template("{{ range(10**9) }}")),
    Case("tpl-nested-loops", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2,
         "iterated more than 1,000,000 times",
         plant=P.template("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")),
    Case("tpl-slow-loops", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2,
         "rendering took more than",
         plant=P.template("{% for i in range(100000) %}{% for a in card.arch_rows %}{% for b in card.arch_rows %}"
                          "{% for c in card.arch_rows %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}")),
    Case("tpl-string-repeat", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2,
         "'*' would build", plant=P.template("{{ 'x' * 10**10 }}")),
    Case("tpl-power", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2,
         "'**' would give a number", plant=P.template("{{ 7 ** 99999999 }}")),
    Case("tpl-center", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2,
         "filter 'center' got 1000000000", plant=P.template("{{ 'x' | center(10**9) }}")),
    Case("tpl-method-width", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2,
         "ljust() got 1000000000", plant=P.template("{{ 'x'.ljust(10**9) }}")),
    Case("tpl-format-width", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2,
         "a format with a width or precision above", plant=P.template('{{ "%0999999999d" | format(1) }}')),
    Case("tpl-str-format-width", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2,
         "a format with a width or precision above", plant=P.template('{{ "{:>999999999}".format(1) }}')),
    Case("tpl-output-size", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2,
         "the card grew past", plant=P.template("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}")),
    Case("tpl-recursion", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2,
         "recursion too deep", plant=P.template("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")),
    Case("tpl-undefined-call", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2,
         "UndefinedError", plant=P.template("{{ nothing() }}")),
    Case("tpl-zero-division", ("card", "--model", "8B", "--template", "{w}/card.j2", "--out", "{w}/c"), 2,
         "ZeroDivisionError", plant=P.template("{{ 1 / 0 }}")),

    # --- cards: inputs of a model directory --------------------------------------------------------------------------
    Case("card-recipe-not-json", ("card", "--model", "{m}", "--out", "{w}/c"), 2, "prune_recipe.json: corrupt prune recipe",
         plant=lambda w, a: (P.model_copy(w, a) / "prune_recipe.json").write_text("{oops")),
    Case("card-distill-record-not-json", ("card", "--model", "{m}", "--out", "{w}/c"), 2,
         "distill.json: corrupt distillation record", plant=lambda w, a: (P.model_copy(w, a) / "distill.json").write_text("[")),
    Case("card-distill-record-incomplete", ("card", "--model", "{m}", "--out", "{w}/c"), 2,
         "not a valid distillation record", plant=lambda w, a: (P.model_copy(w, a) / "distill.json").write_text("{}")),
    Case("card-config-not-json", ("card", "--model", "{m}", "--out", "{w}/c"), 2, "corrupt model config",
         plant=P.config("{")),
    Case("card-check-missing", ("card", "--check", "{w}/README.md"), 2, "no such card file"),
    Case("card-check-binary", ("card", "--check", "{w}/README.md"), 2, "not a UTF-8 text file",
         plant=P.text_file("README.md", b"\xff\xfe\x00\x01")),
    Case("card-check-no-claims", ("card", "--check", "{w}/README.md"), 2, "no architecture claims found",
         plant=P.text_file("README.md", b"# Notes\n\nNothing about shapes here.\n")),
    Case("card-check-unknown-model", ("card", "--check", "{w}/README.md", "--model", "nope"), 2,
         "unknown model 'nope' for --check", plant=P.text_file("README.md", b"# Notes\n")),
]
