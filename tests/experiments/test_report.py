"""The README's results section is generated from the committed result files, and the committed windows are disjoint."""

from __future__ import annotations

import json
import shutil

import pytest

from analysis.experiments.report import BEGIN, END, load_results, readme_section, render
from tests.helpers import ROOT, run_cli

RESULTS = ROOT / "notebooks" / "results"
README = ROOT / "README.md"


def test_readme_results_section_matches_the_committed_files():
    section = readme_section(README.read_text(encoding="utf-8"))
    assert section == render(load_results(RESULTS)), (
        "README.md's results section and notebooks/results/*.json disagree: run python cli.py experiment --report")


def test_committed_results_never_score_on_windows_used_before():
    """Every seed of every committed file: evaluation windows share no token with calibration, selection, training."""
    docs = load_results(RESULTS)
    for doc in docs.values():
        assert len(doc["seeds"]) >= 3, f"{doc['experiment']}: fewer than 3 seeds"
        for seed in doc["per_seed"]:
            rec = seed["splits"]
            T = rec["seq_len"]
            tokens = {role: {t for w in rec[role]["windows"] for t in range(w * T, (w + 1) * T)}
                      for role in ("calibration", "selection", "evaluation", "training")}
            for role in ("calibration", "selection", "training"):
                assert not tokens["evaluation"] & tokens[role], f"{doc['experiment']} seed {seed['seed']}: {role}"
            assert not tokens["selection"] & tokens["calibration"] and not tokens["selection"] & tokens["training"]


def _tables(text: str) -> list[list[list[str]]]:
    """Markdown tables as rows of cells (header first, separator dropped)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            if not set(line) <= set("|-"):
                current.append([c.strip() for c in line.strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    return tables


def test_paper_numbers_only_in_columns_that_name_the_table():
    from analysis.models.paper import AGGREGATION_LOSS, AXES_LOSS

    paper = {f"{v[0]:.2f}" for v in AGGREGATION_LOSS.values()} | {f"{v:.3f}" for v in AXES_LOSS.values()}
    section = readme_section(README.read_text(encoding="utf-8"))
    seen = 0
    for header, *rows in _tables(section):
        for row in rows:
            for name, cell in zip(header, row):
                if cell.split(" (")[0] in paper:  # a bare paper number, e.g. "7.18 (1st)" or "2.049"
                    seen += 1
                    assert "paper" in name and "Table" in name, (name, cell)
                    assert "[" not in cell  # never mixed with our intervals
    assert seen == (9 + 5 if "Pruning axes" in section else 9 if "Aggregation" in section else 0)


def test_report_rewrites_only_its_section_and_check_mode_reports_staleness(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    readme = tmp_path / "README.md"
    readme.write_text(f"# intro\n\n{BEGIN}\nstale\n{END}\n\n## after\n", encoding="utf-8")
    r = run_cli("experiment", "--report", "--check", "--readme", readme, "--out", results)
    assert r.code == 1 and "out of date" in r.err and "stale" in readme.read_text()
    r = run_cli("experiment", "--report", "--readme", readme, "--out", results)
    assert r.code == 0, r.err
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# intro\n\n") and text.endswith("\n\n## after\n") and "stale" not in text
    assert readme_section(text) == render(load_results(results))
    assert run_cli("experiment", "--report", "--check", "--readme", readme, "--out", results).code == 0


def test_an_empty_results_folder_says_results_are_pending(tmp_path):
    text = render({})
    assert "No results committed yet" in text and text.startswith(BEGIN) and text.endswith(END)
    (tmp_path / "bad.json").write_text(json.dumps({"no": "experiment"}))
    with pytest.raises(Exception, match="not an experiment result"):
        load_results(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("no markers here")
    r = run_cli("experiment", "--report", "--readme", readme, "--out", tmp_path / "none")
    assert r.code == 2 and len(r.error_lines) == 1 and "no results markers" in r.error_lines[0]
