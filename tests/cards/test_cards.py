"""Model cards: golden sections, Hugging Face front matter, published facts, --check, sandbox, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from analysis.core.errors import MinitronError
from analysis.models.registry import get
from cards import build, from_spec, render, write_card, write_card_for_directory, write_cards
from cards.check import check_card
from tests.helpers import FIXTURES, TINY, cli_subprocess, run_cli, synthetic_run

TEMPLATES = FIXTURES / "templates"
CLAIMS = FIXTURES / "cards" / "claims.md"  # our own sentences, with the published 4B card's head-count slip
GOLDEN = Path(__file__).parents[1] / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"  # regenerate golden files, then review the diff


def _sentence_hash(sentence: str) -> str:
    return hashlib.sha256(" ".join(sentence.lower().split()).encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def family_cards(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("cards")
    paths = write_cards(["15B", "8B", "4B"], out=out, runs_root=out / "no-runs")
    return {p.parent.name: p for p in paths}


# --- golden sections ----------------------------------------------------------------------------
@pytest.mark.parametrize("model,section", [("4B", "architecture"), ("8B", "evaluation"), ("8B", "overview"),
                                           ("15B", "overview"), ("8B", "analysis")])
def test_golden_sections(tmp_path, model, section):
    runs = tmp_path / "runs"
    if section == "analysis":
        synthetic_run(runs / get(model).name / "r1", name=get(model).name)
    text = render(from_spec(get(model), runs_root=runs), TEMPLATES / f"{section}.j2")
    golden = GOLDEN / f"{get(model).name}.{section}.md"
    if UPDATE:
        golden.write_text(text)
    assert text == golden.read_text()


# --- front matter --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["minitron-8b", "minitron-4b", "nemotron-4-15b"])
def test_front_matter_round_trips_through_huggingface_hub(family_cards, name):
    from huggingface_hub import ModelCard

    text = family_cards[name].read_text()
    card = ModelCard(text)
    data = card.data.to_dict()
    spec = get(name)
    assert data["license"] == "other" and data["license_name"] == "nvidia-open-model-license"
    assert data["license_link"] == spec.license_link
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-generation"
    assert "minitron" in data["tags"]
    assert "base_model" not in data  # the teacher has no Hugging Face id: omitted ...
    if spec.teacher:
        assert "# base_model is omitted" in text  # ... and said so
    results = card.data.eval_results
    assert len(results) == len(spec.evals)
    assert {(r.dataset_name, r.metric_value, r.source_name) for r in results} == {
        (e.task, e.value, e.source) for e in spec.evals}
    assert ModelCard(str(card)).data.to_dict() == data  # re-serialised, reads back the same


def test_model_index_has_the_papers_shots_and_metrics(family_cards):
    from huggingface_hub import ModelCard

    results = {r.dataset_name: r for r in ModelCard(family_cards["minitron-4b"].read_text()).data.eval_results}
    assert "TriviaQA" not in results and "TriviaQA" not in family_cards["minitron-4b"].read_text()
    got = {name: (r.dataset_args["num_few_shot"], r.metric_type, r.metric_value) for name, r in results.items()}
    assert got["TruthfulQA"] == (0, "mc2", 42.9) and got["HellaSwag"] == (10, "acc_norm", 75.0)
    assert got["ARC-Challenge"] == (25, "acc_norm", 50.9) and got["XLSum (en)"] == (3, "rougeL", 29.5)
    assert {r.source_name for r in results.values()} == {"arXiv:2407.14679v2 Table 3"}


def test_cards_say_where_the_published_card_differs(family_cards):
    four, eight, fifteen = (family_cards[n].read_text() for n in ("minitron-4b", "minitron-8b", "nemotron-4-15b"))
    for text in (four, eight):
        notes = text.split("**Where the published model card differs.**")[-1]
        for task, shots in (("HellaSwag", 10), ("Winogrande", 5), ("GSM8K", 5), ("ARC-Challenge", 25), ("XLSum (en)", 3)):
            assert f"- {task}: {shots}-shot" in notes and '"zero-shot" in the published card' in notes
        assert "- MMLU" not in notes  # the published card says 5-shot too
    assert "gives the head count as 32" in four and "4.392B" in four and "head count" not in eight
    assert "published model card differs" not in fifteen  # the teacher has no published card
    assert check_card(family_cards["minitron-4b"])[1] == []  # the note does not read as a 32-head claim


def test_base_model_is_the_teachers_hub_id_when_it_has_one(tmp_path):
    model_dir = _pruned_dir(tmp_path, teacher="smollm2-135m")
    from huggingface_hub import ModelCard

    card = ModelCard(write_card_for_directory(model_dir, runs_root=tmp_path / "runs").read_text())
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.license == "apache-2.0"


# --- published facts -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["minitron-8b", "minitron-4b"])
def test_every_published_evaluation_number_is_in_our_card(family_cards, name):
    scores = json.loads((FIXTURES / "cards" / "published_scores.json").read_text())[name]
    table = family_cards[name].read_text().split("## Evaluation results")[1].split("## Inference")[0]
    for score in scores:
        assert f"| {score:.1f} |" in table, score


def test_published_facts_are_in_the_8b_card_in_our_own_words(family_cards):
    ours = family_cards["minitron-8b"].read_text()
    for fact in ("NVIDIA", "February and June 2024", "research and development only", "94B", "June 2023",
                 "TensorRT-LLM", "NVIDIA A100", "float16", "bfloat16", "Grouped-Query Attention", "Rotary Position",
                 "Nemotron-4", "hybrid", "not applicable", "legal", "finance", "multilingual",
                 "NVIDIA Open Model License", "nvidia/Minitron-8B-Base", "submit-security-vulnerability"):
        assert fact in ours, fact
    for section in ("Overview", "License", "Model architecture", "Usage", "Data and training", "Evaluation results",
                    "Inference", "Limitations", "Ethical considerations", "Compression analysis"):
        assert f"\n## {section}\n" in ours, section
    published = {line for line in (FIXTURES / "cards" / "published_sentences.sha256").read_text().splitlines()
                 if not line.startswith("#")}
    assert len(published) > 20
    for name, path in family_cards.items():
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n", path.read_text()) if len(s.strip()) > 40]
        copied = [s for s in sentences if _sentence_hash(s) in published]
        assert not copied, (name, copied)


def test_architecture_table_is_generated_from_the_registry(family_cards):
    text = family_cards["minitron-4b"].read_text()
    assert "| attention heads | 24 |" in text and "| key/value heads (GQA groups) | 8 |" in text
    assert f"| parameters, total | {get('4B').arch.params()['total']:,} (4.191B) |" in text


def test_usage_snippet_is_valid_python(family_cards):
    snippet = family_cards["minitron-8b"].read_text().split("```python\n")[1].split("```")[0]
    compile(snippet, "usage", "exec")
    assert 'path = "nvidia/Minitron-8B-Base"' in snippet


def test_all_writes_three_cards_that_pass_their_own_check(tmp_path):
    result = run_cli("card", "--all", "--out", tmp_path, "--runs", tmp_path / "none")
    assert result.code == 0, result.err
    for name in ("nemotron-4-15b", "minitron-8b", "minitron-4b"):
        readme = tmp_path / name / "README.md"
        assert (tmp_path / name / "figures" / "benchmarks.png").exists()
        claims, bad = check_card(readme)
        assert len(claims) >= 10 and not bad, bad
        assert "No analysis run of this model yet" in readme.read_text()


# --- compression analysis ------------------------------------------------------------------------
def test_card_shows_the_latest_analysis_run_with_figures(tmp_path):
    synthetic_run(tmp_path / "runs" / "minitron-8b" / "r1", name="minitron-8b")
    readme = write_cards(["8B"], out=tmp_path / "card", runs_root=tmp_path / "runs")[0]
    text = readme.read_text()
    section = text.split("## Compression analysis")[1]
    for fig in ("layer_sensitivity", "block_drop", "head_importance", "neuron_importance", "channel_importance",
                "aggregation"):
        assert f"(figures/{fig}.png)" in section and (readme.parent / "figures" / f"{fig}.png").exists()
    assert "Run `20250101-000000-test`" in section and "Spearman ρ = 0.90" in section
    assert "shape differs" in section  # the synthetic run is not 8B-shaped, and the card says so


# --- --check -------------------------------------------------------------------------------------
def test_check_catches_the_published_4b_head_claim():
    claims, bad = check_card(CLAIMS)
    assert [(d.claim.model, d.claim.field, d.claim.value, d.actual) for d in bad] == [("minitron-4b", "heads", 32, 24)]
    assert len(claims) == 6
    r = run_cli("card", "--check", CLAIMS)
    assert r.code == 1 and "the card says 32, the architecture has 24" in r.out


def test_check_flags_every_disagreement_in_our_table(family_cards, tmp_path):
    _, bad = check_card(family_cards["minitron-8b"], model="4B")
    assert {d.claim.field for d in bad} >= {"hidden", "heads", "mlp", "params_total", "params_non_embedding"}


def test_check_uses_config_json_beside_the_card(tmp_path):
    model_dir = _pruned_dir(tmp_path)
    readme = write_card_for_directory(model_dir, runs_root=tmp_path / "runs")
    assert check_card(readme)[1] == []
    readme.write_text(readme.read_text().replace("| attention heads | 4 |", "| attention heads | 6 |"))
    assert [(d.claim.field, d.claim.value, d.actual) for d in check_card(readme)[1]] == [("heads", 6, 4)]


def test_check_bad_inputs_are_one_line_errors(tmp_path):
    for args in (["--check", tmp_path / "missing.md"], ["--check", CLAIMS, "--model", "nope"]):
        r = run_cli("card", *args)
        assert r.code == 2 and r.err.strip().count("\n") == 0 and r.err.startswith("error:"), r.err


# --- templates, formats, atomic writes -----------------------------------------------------------
@pytest.mark.parametrize("body,message", [("{{ ''.__class__.__mro__ }}", "refused by the sandbox"),
                                          ("{{ card.arch.params.__globals__ }}", "refused by the sandbox"),
                                          ("{% for x in card %}", "syntax error")])
def test_bad_user_templates_fail_in_one_line_and_write_nothing(tmp_path, body, message):
    template = tmp_path / "user.j2"
    template.write_text(f"# {{{{ card.display_name }}}}\n{body}\n")
    r = run_cli("card", "--model", "4B", "--template", template, "--out", tmp_path / "out")
    assert r.code == 2 and message in r.err and r.err.strip().count("\n") == 0, r.err
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["user.j2"]  # no staging directory left behind


def test_user_template_can_include_our_sections(tmp_path):
    template = tmp_path / "mine.j2"
    template.write_text('# {{ card.display_name }} ({{ card.params.total }})\n{% include "sections/license.md.j2" %}')
    readme = write_card(build("4B", tmp_path / "runs"), tmp_path / "out", template=template)
    assert readme.read_text().startswith(f"# Minitron-4B-Base ({get('4B').arch.params()['total']})\n## License")


def test_html_is_self_contained(tmp_path):
    page = write_cards(["8B"], out=tmp_path / "html", fmt="html", runs_root=tmp_path / "runs")[0]
    html = page.read_text()
    assert page.name == "card.html" and html.count('src="data:image/png;base64,') == 3
    assert 'src="figures/' not in html and "<table>" in html and "---\nlibrary_name" not in html
    assert sorted(p.name for p in page.parent.iterdir()) == [".minitron-lab.json", "card.html"]  # the marker: ours


def test_unknown_format_and_model(tmp_path):
    with pytest.raises(MinitronError, match="unknown --format"):
        write_cards(["8B"], out=tmp_path, fmt="pdf")
    with pytest.raises(MinitronError, match="unknown model 'nope'"):
        build("nope")


def test_rewriting_a_card_replaces_it(tmp_path):
    first = write_cards(["4B"], out=tmp_path / "c", runs_root=tmp_path / "runs")[0]
    first.write_text("stale")
    assert write_cards(["4B"], out=tmp_path / "c", runs_root=tmp_path / "runs")[0].read_text().startswith("---\n")


# --- pruned model directories --------------------------------------------------------------------
def _pruned_dir(tmp_path: Path, teacher: str = "nemotron-4-15b", recipe: dict | None = None) -> Path:
    from analysis.models.configs import to_hf_config

    model_dir = tmp_path / "tiny-pruned"
    model_dir.mkdir()
    to_hf_config(TINY["nemotron"]).save_pretrained(model_dir)
    recipe = recipe if recipe is not None else {
        "teacher": teacher, "teacher_params": 15_628_775_424, "params": TINY["nemotron"].params()["total"],
        "target": {"hidden": 32, "heads": 4, "mlp": 48}, "depth_metric": "drop_loss", "aggregation": "l2_mean",
        "ppl_before": 12.5, "ppl_after": 19.25}
    (model_dir / "prune_recipe.json").write_text(json.dumps(recipe) if isinstance(recipe, dict) else recipe)
    return model_dir


def test_card_for_a_pruned_directory(tmp_path):
    model_dir = _pruned_dir(tmp_path)
    readme = write_card_for_directory(model_dir, runs_root=tmp_path / "runs")
    text = readme.read_text()
    assert readme == model_dir / "README.md"
    assert "| layers | 4 |" in text and "| hidden size (embedding channels) | 32 |" in text
    assert "perplexity 12.50 for the teacher and 19.25 for the pruned model" in text and "`l2_mean`" in text
    assert "pruned without any retraining" in text and "distillation" not in text.split("## Limitations")[1]
    assert f'path = "{model_dir.resolve()}"' in text and "| hidden | 32 |" in text
    assert "NVIDIA Open Model License" in text  # inherited from the teacher
    r = run_cli("card", "--model", model_dir, "--runs", tmp_path / "runs")
    assert r.code == 0 and Path(r.out.strip()) == readme


@pytest.mark.parametrize("merge, says", [({"enabled": True, "applied": True, "pairs": {"0": [[1, 2]]}}, "were merged"),
                                         ({"enabled": False, "applied": False, "reason": "--no-head-merge"},
                                          "were not merged (--no-head-merge)")])
def test_pruned_card_says_whether_heads_were_merged(tmp_path, merge, says):
    recipe = json.loads((_pruned_dir(tmp_path) / "prune_recipe.json").read_text()) | {"head_merge": merge}
    (tmp_path / "tiny-pruned" / "prune_recipe.json").write_text(json.dumps(recipe))
    text = write_card_for_directory(tmp_path / "tiny-pruned", runs_root=tmp_path / "runs").read_text()
    assert f"Pruned heads {says}" in text or f"query heads {says}" in text


def test_bad_prune_recipe_is_one_line_error_and_nothing_written(tmp_path):
    model_dir = _pruned_dir(tmp_path, recipe="{not json")
    r = run_cli("card", "--model", model_dir)
    assert r.code == 2 and "corrupt prune recipe: not valid JSON" in r.err and r.err.strip().count("\n") == 0
    assert not (model_dir / "README.md").exists()


@pytest.mark.slow
def test_card_in_a_real_process(tmp_path):
    r = cli_subprocess("card", "--model", "4B", "--out", tmp_path / "4b", "--runs", tmp_path / "none")
    assert r.code == 0 and (tmp_path / "4b" / "README.md").exists(), r.err
    r = cli_subprocess("card", "--check", tmp_path / "4b" / "README.md")
    assert r.code == 0 and "0 disagree" in r.err, r.err


# --- what a card says about tuning, quantization and the training that really ran --------------------------
def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## ", text, flags=re.MULTILINE)
    return {p.split("\n", 1)[0]: p for p in parts[1:]}


def test_the_embedded_instruct_model_is_not_called_a_base_model(tmp_path):
    text = render(from_spec(get("smollm2-135m"), runs_root=tmp_path / "runs"))
    assert "base model" not in text and "tuned it to follow instructions" in text
    assert "Q4_1" in _sections(text)["Overview"] and "dequantizes them to float32" in _sections(text)["Limitations"]


def test_a_model_pruned_from_it_is_said_to_be_derived_not_base_nor_instruct(tmp_path):
    text = write_card_for_directory(_pruned_dir(tmp_path, teacher="smollm2-135m"), runs_root=tmp_path / "runs").read_text()
    s = _sections(text)
    assert "base model" not in text and "cut from an instruction-tuned model" in s["Limitations"]
    assert "whether it still follows instructions or chats was not measured" in s["Usage"]
    assert "distill" not in s["Limitations"].replace("cli.py distill", "") and "not been retrained" in s["Overview"]


def _distilled_dir(tmp_path: Path) -> Path:
    model_dir = _pruned_dir(tmp_path, teacher="smollm2-135m")
    record = {"mode": "distill", "config": {"steps": 40, "seq_len": 128, "eval_samples": 8},
              "final": {"before": {"loss": 2.0149, "ppl": 7.5, "kl": 4.44, "teacher_loss": 1.1},
                        "after": {"loss": 1.5933, "ppl": 4.92, "kl": 1.98, "teacher_loss": 1.1}},
              "tokens_seen": 10240, "teacher": {"name": "smollm2-135m"}, "data": {"source": "pydoc"}}
    (model_dir / "distill.json").write_text(json.dumps(record))
    return model_dir


def test_a_distilled_card_reports_the_distillation_and_labels_the_stale_numbers(tmp_path):
    import math

    text = write_card_for_directory(_distilled_dir(tmp_path), runs_root=tmp_path / "runs").read_text()
    s = _sections(text)
    assert "held-out perplexity **4.92**" in s["Evaluation results"] and "7.50 before training" in s["Evaluation results"]
    assert f"teacher {math.exp(1.1):.2f}" in s["Evaluation results"]
    assert "when it was pruned, before distillation" in s["Evaluation results"]  # the post-prune 19.25 is labelled
    assert "40 steps of distillation (10,240 tokens) took its held-out perplexity from 7.50 to 4.92" in s["Limitations"]
    assert "pruned without any retraining" not in text and "then trained for 40 steps" in s["Overview"]
    assert "| optimizer steps | 40 |" in s["Data and training"]


def test_each_students_scores_cite_the_table_that_reports_it(family_cards):
    """The 4B's scores once cited the 8B's page; each student now cites the paper table that lists it."""
    from huggingface_hub import ModelCard

    for name, table in (("minitron-4b", "Table 3"), ("minitron-8b", "Table 2")):
        card = ModelCard(family_cards[name].read_text())
        cited = {(r.source_name, r.source_url) for r in card.data.eval_results}
        assert cited == {(f"arXiv:2407.14679v2 {table}", "https://arxiv.org/abs/2407.14679")}
