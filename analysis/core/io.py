"""Atomic writes: a file or directory appears complete or not at all. Every writer in the package uses these.

  atomic_file(path)         a temporary sibling file, renamed over ``path`` on success
  write_json / write_text   ``atomic_file`` for one document
  atomic_dir(target)        a temporary sibling directory that becomes ``target`` in one rename
  staged_files(target)      a temporary directory whose files move into ``target`` one rename each
                            (for adding files to a directory that holds other things, e.g. a card)

On any exception the temporary file or directory is removed and the target is left as it was.
Temporaries are hidden siblings (``.<name>.tmp-*``) so a rename never crosses file systems.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data, default=str) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically; ``default`` converts other objects."""
    return write_text(path, json.dumps(data, indent=2, default=default) + "\n")


@contextmanager
def atomic_dir(target: str | Path, keep_existing: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it becomes ``target`` in one rename.

    An existing ``target`` is moved aside first and deleted after the rename, so readers never see a
    half-written directory. ``keep_existing``: if ``target`` exists when the block ends (another process
    finished the same work first), keep that one and discard ours.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        yield tmp
        if target.exists() and keep_existing:
            return
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def staged_files(target: str | Path, last: str | None = None) -> Iterator[Path]:
    """Yield a staging directory; on success each file in it moves to the same place under ``target``.

    Other files already in ``target`` stay. ``last`` (a relative name) moves after every other file, so
    a document that links to the others (a card and its figures) only appears once they are there.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        yield stage
        files = sorted(p.relative_to(stage) for p in stage.rglob("*") if p.is_file())
        files.sort(key=lambda rel: str(rel) == last)  # stable: ``last`` to the end
        target.mkdir(parents=True, exist_ok=True)
        for rel in files:
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, target / rel)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def refuse_nonempty(target: str | Path, force: bool) -> None:
    """Raise unless ``target`` is absent or an empty directory, or ``force`` allows replacing it."""
    from analysis.core.errors import MinitronError

    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not force:
        raise MinitronError(f"{target} already exists and is not empty; pass --force to replace it")
