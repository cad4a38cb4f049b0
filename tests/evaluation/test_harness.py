"""``evaluate`` against lm-evaluation-harness called directly (it loads the model itself) and a float64 loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from analysis.core.errors import MinitronError
from analysis.evaluation.benchmarks import PAPER_TASKS, paper_task
from analysis.evaluation.harness import EvalConfig, evaluate, resolve, yaml_task
from analysis.evaluation.results import find_evaluations, load_evaluation
from analysis.models.loading import LoadConfig
from tests.helpers import FIXTURES, run_cli, tree

TASK = FIXTURES / "lmeval" / "mc.yaml"
DOCS = [json.loads(line) for line in (FIXTURES / "lmeval" / "mc.jsonl").read_text().splitlines()]

pytest.importorskip("lm_eval")


@pytest.fixture(scope="module")
def llama_dir(tiny_dirs):
    return tiny_dirs["llama"][0]


def _direct(model_dir: Path, tmp_path: Path, shots: int | None) -> dict:
    """lm-eval on its own: loads the model from the directory, reads a YAML with an absolute data path."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    tasks = tmp_path / "direct-tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "mc.yaml").write_text(TASK.read_text().replace("test: mc.jsonl", f"test: {TASK.parent / 'mc.jsonl'}"))
    res = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(model_dir), "dtype": "float32"},
                                  device="cpu", tasks=["minitron_fixture_mc"], num_fewshot=shots, batch_size=4,
                                  task_manager=TaskManager(include_path=str(tasks), include_defaults=False))
    return res


@pytest.mark.parametrize("shots", [None, 2])
def test_evaluate_equals_lm_eval_called_directly(llama_dir, tmp_path, shots):
    out = evaluate(EvalConfig(load=LoadConfig(model=str(llama_dir), device="cpu"), tasks=(str(TASK),),
                              num_fewshot=shots, batch_size=3), out=tmp_path / "ours")
    doc, samples = load_evaluation(out)
    ours = doc["tasks"][str(TASK)]
    direct = _direct(llama_dir, tmp_path, shots)
    want = direct["results"]["minitron_fixture_mc"]
    assert ours["metric"] == "acc,none" and ours["n"] == len(DOCS) and ours["shots"] == (shots or 0)
    for key in ("acc,none", "acc_norm,none", "acc_stderr,none"):
        assert ours["metrics"][key] == pytest.approx(want[key], abs=1e-12), key
    per_doc = [s["acc"] for s in sorted(direct["samples"]["minitron_fixture_mc"], key=lambda s: s["doc_id"])]
    assert samples[str(TASK)]["minitron_fixture_mc"]["acc,none"] == per_doc
    assert doc["model"]["weights_fingerprint"] and doc["versions"]["lm_eval"] and ours["version"] == 2.0
    assert doc["settings"]["num_fewshot"] == shots and ours["source"] == str(TASK)


def test_zero_shot_accuracy_equals_a_float64_loop(llama_dir, tiny_dirs, smol, tmp_path):
    """acc and acc_norm from our own loglikelihoods: context + continuation encoded whole, split after the context."""
    model = tiny_dirs["llama"][1].double()
    tok = smol.tokenizer
    acc = acc_norm = 0
    for d in DOCS:
        lls = []
        for choice in d["choices"]:
            ctx, whole = tok.encode(d["question"]), tok.encode(d["question"] + " " + choice)
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([whole])).logits[0], -1)
            lls.append(sum(float(logp[p - 1, whole[p]]) for p in range(len(ctx), len(whole))))
        acc += max(range(3), key=lls.__getitem__) == d["answer"]
        acc_norm += max(range(3), key=lambda i: lls[i] / len(d["choices"][i])) == d["answer"]
    model.float()
    doc, _ = load_evaluation(evaluate(EvalConfig(load=LoadConfig(model=str(llama_dir), device="cpu"),
                                                 tasks=(str(TASK),)), out=tmp_path / "e"))
    got = doc["tasks"][str(TASK)]["metrics"]
    assert got["acc,none"] == pytest.approx(acc / len(DOCS)) and got["acc_norm,none"] == pytest.approx(acc_norm / len(DOCS))


def test_our_tasks_resolve_with_their_data_beside_them():
    for name in ("minitron_facts", "minitron_cloze"):
        (req,) = resolve(EvalConfig(tasks=(name,)))
        files = req.spec["dataset_kwargs"]["data_files"]
        assert req.source == "minitron-lab" and Path(files["test"]).is_file()
    facts = [json.loads(line) for line in Path(yaml_task(TASK.parents[3] / "analysis" / "evaluation" / "tasks" /
                                                          "minitron_facts.yaml")["dataset_kwargs"]["data_files"]["test"])
             .read_text().splitlines()]
    assert len(facts) == 64 and {f["answer"] for f in facts} == {0, 1, 2, 3}


def test_paper_settings_come_from_one_table():
    reqs = resolve(EvalConfig(tasks=("arc_c", "hellaswag", "winogrande", "truthfulqa", "mmlu"), paper_settings=True))
    assert [(r.task, r.shots, r.metric) for r in reqs] == [
        ("arc_challenge", 25, "acc_norm,none"), ("hellaswag", 10, "acc_norm,none"), ("winogrande", 5, "acc,none"),
        ("truthfulqa_mc2", 0, "acc,none"), ("mmlu", 5, "acc,none")]
    assert paper_task("arc_challenge") is PAPER_TASKS["arc_c"]
    assert [r.shots for r in resolve(EvalConfig(tasks=("arc_c",)))] == [None]  # task default without the flag


@pytest.mark.parametrize("args,message", [
    (["--tasks", "xlsum", "--paper-settings"], "no English XLSum task"),
    (["--tasks", "mbpp"], "--allow-code-execution"),
    (["--tasks", "arc_c", "--paper-settings", "--num-fewshot", "3"], "drop --num-fewshot"),
    (["--tasks", "minitron_facts,minitron_facts"], "requested twice"),
    (["--tasks", "no/such/task.yaml"], "does not exist"),
    (["--tasks", "minitron_facts", "--limit", "0"], "--limit must be an integer in [1, "),
])
def test_bad_requests_fail_in_one_line_before_loading(tmp_path, args, message):
    r = run_cli("evaluate", *args, "--out", tmp_path / "out")
    assert r.code == 2 and message in r.err and len(r.error_lines) == 1, r.err
    assert not (tmp_path / "out").exists()


def test_task_yaml_problems_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TASK.read_text().replace("test: mc.jsonl", "test: missing.jsonl"))
    with pytest.raises(MinitronError, match="missing.jsonl"):
        resolve(EvalConfig(tasks=(str(bad),)))
    bad.write_text("task: x\nprocess_docs: !function utils.process\n")
    with pytest.raises(MinitronError, match="--include"):
        resolve(EvalConfig(tasks=(str(bad),)))


def test_output_contract_and_card_lookup(llama_dir, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    before = tree(foreign)
    r = run_cli("evaluate", "--model", llama_dir, "--tasks", TASK, "--out", foreign)
    assert r.code == 2 and "not made by minitron-lab" in r.err and tree(foreign) == before
    out = tmp_path / "runs" / "tiny" / "eval-x"
    r = run_cli("evaluate", "--model", llama_dir, "--tasks", TASK, "--limit", "4", "--out", out, "--device", "cpu")
    assert r.code == 0, r.err
    doc, samples = load_evaluation(out)
    assert doc["tasks"][str(TASK)]["n"] == 4 and len(samples[str(TASK)]["minitron_fixture_mc"]["acc,none"]) == 4
    assert find_evaluations(tmp_path / "runs", fingerprint=doc["model"]["weights_fingerprint"]) == [out]
    assert find_evaluations(tmp_path / "runs", name="someone-else") == []


@pytest.mark.slow
def test_a_task_without_local_data_is_one_line_error(llama_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))  # an empty cache: nothing is available offline
    r = run_cli("evaluate", "--model", llama_dir, "--tasks", "arc_easy", "--limit", "2", "--out", tmp_path / "o")
    assert r.code == 2 and "not available offline" in r.err and len(r.error_lines) == 1, r.err
    assert not (tmp_path / "o").exists()
    r = run_cli("evaluate", "--model", llama_dir, "--tasks", "no_such_task_anywhere", "--out", tmp_path / "o")
    assert r.code == 2 and "unknown task 'no_such_task_anywhere'" in r.err


def test_a_missing_eval_extra_is_one_line_error(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if lm-evaluation-harness were not installed
    r = run_cli("evaluate", "--tasks", "minitron_facts", "--out", tmp_path / "o")
    assert r.code == 2 and "pip install 'minitron-lab[eval]'" in r.err and len(r.error_lines) == 1, r.err
    assert not (tmp_path / "o").exists()


def test_headline_metric_is_the_first_of_the_task_config():
    from analysis.evaluation.harness import TaskRequest, _headline

    metrics = {"perplexity,none": 90.0, "perplexity_stderr,none": 9.0, "acc,none": 0.3, "acc_stderr,none": 0.05}
    r = TaskRequest("t", "t", "t", "lm-eval")
    assert _headline(r, metrics, {"metric_list": [{"metric": "acc"}, {"metric": "perplexity"}]}) == "acc,none"
    assert _headline(r, metrics, {}) == "perplexity,none"
    paper = TaskRequest("t", "t", "t", "lm-eval", metric="perplexity,none")
    assert _headline(paper, metrics, {"metric_list": [{"metric": "acc"}]}) == "perplexity,none"


@pytest.mark.parametrize("changes,message", [
    ({"num_fewshot": -1}, "--num-fewshot must be"), ({"limit": 0}, "--limit must be"),
    ({"batch_size": 0}, "--batch-size must be"), ({"bootstrap_iters": 0}, "bootstrap_iters must be")])
def test_config_ranges_are_checked_where_the_library_is_called(changes, message):
    with pytest.raises(MinitronError, match=message):
        EvalConfig(**changes)


def test_a_damaged_run_is_named_when_read_and_skipped_with_a_warning_when_searched(tmp_path):
    from analysis.core.errors import MinitronWarning

    good, bad = tmp_path / "m" / "eval-good", tmp_path / "m" / "eval-bad"
    for d in (good, bad):
        d.mkdir(parents=True)
    (good / "evaluation.json").write_text(json.dumps({"model": {"name": "m"}, "tasks": {}, "settings": {}}))
    (bad / "evaluation.json").write_text('{"model": {"name": "m"}, "tasks": {"t": {"value": NaN}}, "settings": {}}')
    with pytest.raises(MinitronError, match="evaluation.json: corrupt evaluation record: NaN is not a JSON number"):
        load_evaluation(bad)
    with pytest.warns(MinitronWarning, match="skipping a damaged evaluate run"):
        assert find_evaluations(tmp_path, name="m") == [good]
