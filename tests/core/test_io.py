"""Atomic writes: complete or absent, never half-written; temporaries never left behind."""

from __future__ import annotations

import json

import pytest

from analysis.core.errors import MinitronError
from analysis.core.io import (
    MARKER,
    atomic_dir,
    atomic_file,
    check_output,
    output_dir,
    staged_files,
    write_json,
)


class Boom(Exception):
    pass


def test_atomic_file_replaces_or_leaves_untouched(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"x": 1})
    assert json.loads(target.read_text()) == {"x": 1}
    with pytest.raises(Boom), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise Boom
    assert json.loads(target.read_text()) == {"x": 1} and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_dir_swaps_whole_directories(tmp_path):
    target = tmp_path / "run"
    with atomic_dir(target) as tmp:
        (tmp / "one").write_text("1")
    with pytest.raises(Boom), atomic_dir(target) as tmp:
        (tmp / "two").write_text("2")
        raise Boom
    assert [p.name for p in target.iterdir()] == ["one"]
    with atomic_dir(target) as tmp:
        (tmp / "two").write_text("2")
    assert [p.name for p in target.iterdir()] == ["two"]
    with atomic_dir(target, keep_existing=True) as tmp:  # another writer finished first: keep theirs
        (tmp / "three").write_text("3")
    assert [p.name for p in target.iterdir()] == ["two"] and [p.name for p in tmp_path.iterdir()] == ["run"]


def test_staged_files_add_to_a_directory_the_named_file_last(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("w")
    with staged_files(target, last="README.md") as stage:
        (stage / "README.md").write_text("card")
        (stage / "figures").mkdir()
        (stage / "figures" / "a.png").write_text("png")
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
        "README.md", "figures/a.png", "weights"]
    with pytest.raises(Boom), staged_files(target) as stage:
        (stage / "README.md").write_text("new")
        raise Boom
    assert (target / "README.md").read_text() == "card" and [p.name for p in tmp_path.iterdir()] == ["model"]


def test_check_output_allows_new_empty_and_ours_refuses_the_rest(tmp_path):
    check_output(tmp_path / "new" / "deeper")
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(MinitronError, match="is a file"):
        check_output(tmp_path / "file", force=True)
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "thesis.tex").write_text("mine")
    with pytest.raises(MinitronError, match="not made by minitron-lab.*--force"):
        check_output(tmp_path / "theirs")
    check_output(tmp_path / "theirs", force=True)
    with output_dir(tmp_path / "ours", "test") as stage:
        (stage / "a.json").write_text("{}")
    check_output(tmp_path / "ours")  # made by us: no --force needed


def test_output_dir_replaces_only_what_it_made(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "thesis.tex").write_text("mine")
    with output_dir(target, "test") as stage:
        (stage / "metrics.json").write_text("1")
        (stage / "figures").mkdir()
        (stage / "figures" / "a.png").write_text("png")
    (target / "notes.txt").write_text("added later")
    with output_dir(target, "test") as stage:
        (stage / "metrics.json").write_text("2")
    files = {str(p.relative_to(target)): p.read_text() for p in target.rglob("*") if p.is_file()}
    assert {k: v for k, v in files.items() if k != MARKER} == {"thesis.tex": "mine", "notes.txt": "added later",
                                                               "metrics.json": "2"}
    assert json.loads(files[MARKER])["files"] == ["metrics.json"]


def test_unwritable_output_fails_before_any_work(tmp_path):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: nothing to test here
            pytest.skip("running as a user that can write anywhere")
        with pytest.raises(MinitronError, match="cannot write"):
            check_output(locked / "run")
    finally:
        locked.chmod(0o700)


def test_output_files_add_to_a_directory_and_record_them(tmp_path):
    from analysis.core.io import output_files

    target = tmp_path / "model"
    with output_dir(target, "prune") as stage:
        (stage / "config.json").write_text("{}")
    (target / "notes.txt").write_text("mine")
    check_output(target, files=["README.md"])  # ours, and no README of the user's in the way
    with output_files(target, "card", last="README.md") as stage:
        (stage / "README.md").write_text("card")
        (stage / "figures").mkdir()
        (stage / "figures" / "a.png").write_text("png")
    marker = json.loads((target / MARKER).read_text())
    assert marker["command"] == "prune" and marker["files"] == ["README.md", "config.json", "figures/a.png"]
    assert (target / "notes.txt").read_text() == "mine"
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / MARKER).write_text('{"tool": "minitron-lab", "command": "x", "files": []}')
    (tmp_path / "theirs" / "README.md").write_text("the user's")
    with pytest.raises(MinitronError, match="README.md was not made by minitron-lab"):
        check_output(tmp_path / "theirs", files=["README.md"])


def test_claim_and_record_a_directory_written_step_by_step(tmp_path):
    from analysis.core.io import claim, made_by_us, record

    out = claim(tmp_path / "distill", "distill")
    assert made_by_us(out) and json.loads((out / MARKER).read_text())["files"] == []
    (out / "checkpoint").mkdir()
    (out / "checkpoint" / "a.safetensors").write_text("x")
    (out / "distill.json").write_text("{}")
    record(out, ["checkpoint", "distill.json"])
    assert json.loads((out / MARKER).read_text())["files"] == ["checkpoint/a.safetensors", "distill.json"]
    claim(out, "distill")  # claiming again keeps what was recorded
    assert len(json.loads((out / MARKER).read_text())["files"]) == 2


def test_what_we_write_gets_plain_permissions_and_the_users_files_keep_theirs(tmp_path):
    import os
    import stat

    import torch
    from safetensors.torch import save_file

    from analysis.core.io import DIR_MODE, FILE_MODE

    target = tmp_path / "run"
    target.mkdir()
    (target / "secret.txt").write_text("mine")
    os.chmod(target / "secret.txt", 0o600)
    with output_dir(target, "test") as stage:
        save_file({"x": torch.zeros(2)}, str(stage / "t.safetensors"))  # safetensors itself may create 0600
        write_json(stage / "m.json", {"a": 1})
        (stage / "figures").mkdir()
        (stage / "figures" / "a.svg").write_text("<svg/>")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in target.rglob("*")}
    assert modes["t.safetensors"] == modes["m.json"] == modes["a.svg"] == modes[MARKER] == FILE_MODE
    assert modes["figures"] == DIR_MODE == stat.S_IMODE(target.stat().st_mode)
    assert modes["secret.txt"] == 0o600


def test_the_users_links_and_empty_folders_survive_a_rewrite(tmp_path):
    import os

    target = tmp_path / "out"
    target.mkdir()
    (target / "empty").mkdir()
    os.symlink("/etc/hostname", target / "link")
    with output_dir(target, "test") as stage:
        (stage / "a.json").write_text("{}")
    assert (target / "empty").is_dir() and os.readlink(target / "link") == "/etc/hostname"


def test_json_is_strict_both_ways(tmp_path):
    from analysis.core.io import read_json

    with pytest.raises(ValueError, match="non-finite"):
        write_json(tmp_path / "x.json", {"loss": float("nan")})
    assert not (tmp_path / "x.json").exists()
    (tmp_path / "y.json").write_text('{"loss": NaN}')
    with pytest.raises(MinitronError, match=r"y.json: corrupt run file: NaN is not a JSON number"):
        read_json(tmp_path / "y.json", "run file")
