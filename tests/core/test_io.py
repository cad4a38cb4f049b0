"""Atomic writes: complete or absent, never half-written; temporaries never left behind."""

from __future__ import annotations

import json

import pytest

from analysis.core.errors import MinitronError
from analysis.core.io import atomic_dir, atomic_file, refuse_nonempty, staged_files, write_json


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


def test_refuse_nonempty(tmp_path):
    refuse_nonempty(tmp_path / "new", force=False)
    (tmp_path / "empty").mkdir()
    refuse_nonempty(tmp_path / "empty", force=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(MinitronError, match="--force"):
        refuse_nonempty(tmp_path / "file", force=False)
    refuse_nonempty(tmp_path / "file", force=True)
