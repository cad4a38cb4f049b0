"""Every case of the bad-input table through the real CLI entry point (``cli.run``, in process).

For each case: a fresh working directory, the planted files, the command; then the exit code, one
``error:`` line holding the expected phrase and no traceback, every file on disk as it was (planted
ones, the shared assets) apart from the paths a successful case is allowed to write, and no planted
pickle ever run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from analysis.core.io import MARKER
from tests.bad_inputs import plants as P
from tests.bad_inputs.cases import CASES, Case, _tiny_analysis_cfg
from tests.helpers import run_cli, tree


@pytest.fixture(scope="module")
def assets(tiny_dirs, tmp_path_factory, one_thread) -> P.Assets:
    from analysis.importance.pipeline import run_analysis
    from analysis.models.gguf_cache import locate_gguf
    from analysis.models.registry import get

    tiny = tiny_dirs["llama"][0]
    base = P.Assets(tiny=tiny, run=Path(), gguf=locate_gguf(get("smollm2-135m")))
    cfg = _tiny_analysis_cfg(base)
    cfg.block_sizes = (1, 2)
    run = run_analysis(cfg, out=tmp_path_factory.mktemp("bad-inputs-assets") / "run")
    return P.Assets(tiny=tiny, run=run, gguf=base.gguf)


def _argv(case: Case, w: Path, a: P.Assets) -> list[str]:
    return [x.format(w=w, m=w / "m", tiny=a.tiny, run=a.run) for x in case.argv]


def _changed(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, assets, tmp_path, monkeypatch):
    if case.skip and (reason := case.skip()):
        pytest.skip(reason)
    w = tmp_path / "w"
    w.mkdir()
    monkeypatch.chdir(w)
    if case.env:
        case.env(monkeypatch)
    if case.plant:
        case.plant(w, assets)
    before, shared = tree(w), (tree(assets.tiny), tree(assets.run))

    r = run_cli(*_argv(case, w, assets))
    if os.environ.get("MINITRON_SHOW_CASES"):  # pytest -s: the message each case gets, for review
        print(f"\n[{case.id}] exit {r.code}: {(r.error_lines or [''])[0] or r.err.strip().splitlines()[-1:]}")

    assert r.code == case.code, f"exit {r.code}, stderr:\n{r.err}"
    assert "Traceback" not in r.err and "Traceback" not in r.out
    if case.code:
        assert len(r.error_lines) == 1, r.err
        assert case.phrase in r.error_lines[0], r.err
    elif case.phrase:
        assert any(case.phrase in line for line in r.err.splitlines() if line.startswith("warning:")), r.err
    assert not (w / P.PAYLOAD).exists(), "a planted pickle ran"
    assert (tree(assets.tiny), tree(assets.run)) == shared
    after = tree(w)
    changed = _changed(before, after)
    if case.code:
        assert changed == [], f"a failed command changed {changed}"
    else:  # allowed to write its own outputs only; every planted file is still there, byte for byte
        assert all(any(c.startswith(prefix) for prefix in case.writes) for c in changed), changed
        assert all(after.get(k) == v for k, v in before.items() if not k.endswith(MARKER)
                   and not _ours(w, k)), "a file the user planted was changed or removed"


def _ours(w: Path, rel: str) -> bool:
    """Files listed in a marker the case planted itself (it declared them made by us)."""
    parent = (w / rel).parent
    while parent != w.parent:
        if (parent / MARKER).exists():
            try:
                return str((w / rel).relative_to(parent)) in json.loads((parent / MARKER).read_text())["files"]
            except (ValueError, KeyError):
                return False
        parent = parent.parent
    return False


def test_the_table_covers_the_issue():
    """At least the 130 cases the issue describes, every command, each category."""
    assert len(CASES) >= 130 and len({c.id for c in CASES}) == len(CASES)
    commands = {c.argv[0] for c in CASES}
    assert {"analyze", "bench", "distill", "prune", "search", "card", "figures", "perplexity", "evaluate", "compare",
            "experiment"} <= commands
    for prefix in ("range-", "model-", "data-", "out-", "run-", "ckpt-", "exec-", "tpl-", "card-", "usage-"):
        assert any(c.id.startswith(prefix) for c in CASES), prefix
