"""Atomic writes: a file or directory appears complete or not at all. Every writer in the package uses these.

  atomic_file(path)         a temporary sibling file, renamed over ``path`` on success
  write_json / write_text   ``atomic_file`` for one document
  atomic_dir(target)        a temporary sibling directory that becomes ``target`` in one rename
  staged_files(target)      a temporary directory whose files move into ``target`` one rename each
                            (for adding files to a directory that holds other things, e.g. a card)

The output contract for user-facing directories: ``check_output`` before computing (new, empty or
made by us, else ``--force``; writable), ``output_dir`` to write one (marker file, foreign files kept).

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


# --- the output contract ------------------------------------------------------------------------------
MARKER = ".minitron-lab.json"  # in every directory a command made: which files it wrote


def _marker_files(target: Path) -> set[str] | None:
    """Relative names of the files our marker lists, or None when ``target`` holds no readable marker."""
    try:
        doc = json.loads((target / MARKER).read_text())
        return set(doc["files"]) if doc.get("tool") == "minitron-lab" else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _writable(target: Path) -> None:
    """Create and remove a file where ``target`` would be created, so a read-only place fails before any work."""
    from analysis.core.errors import MinitronError

    probe_dir = target if target.is_dir() else next((p for p in target.parents if p.exists()), Path("."))
    try:
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".minitron-lab-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise MinitronError(f"cannot write to {target}: {exc.strerror or exc}") from None


def check_output(target: str | Path, force: bool = False) -> Path:
    """May a command write its output directory ``target``? Checked before any computation.

    Allowed: a new path, an empty directory, or a directory this toolkit made (its marker file is
    there). Anything else is refused unless ``force``; even then only the files the command writes are
    replaced, nothing else in the directory is touched. A path that is a file is always refused, and
    so is a place that cannot be written to.
    """
    from analysis.core.errors import MinitronError

    target = Path(target)
    if target.exists() and not target.is_dir():
        raise MinitronError(f"{target} is a file; the output must be a directory (new, empty, or made by minitron-lab)")
    if target.is_dir() and any(target.iterdir()) and _marker_files(target) is None and not force:
        raise MinitronError(f"{target} is not empty and was not made by minitron-lab; choose a new directory, "
                            "or pass --force to write into it (only the files this command makes are replaced)")
    _writable(target)
    return target


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (no bytes copied; the original stays if anything fails later), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@contextmanager
def output_dir(target: str | Path, command: str, keep_ours: bool = False) -> Iterator[Path]:
    """Yield a staging directory that becomes the output ``target`` atomically, with the marker.

    Files already in ``target`` that the toolkit did not make (not in its marker) are carried into the
    new directory untouched; files it made before are replaced, or, with ``keep_ours`` (a directory
    that collects results one command at a time), kept unless this call writes them again.
    Call ``check_output`` first.
    """
    target = Path(target)
    with atomic_dir(target) as stage:
        yield stage
        ours = {str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file()}
        if target.is_dir():
            made = _marker_files(target) or set()
            for p in sorted(target.rglob("*")):
                rel = str(p.relative_to(target))
                if p.is_file() and rel != MARKER and not (stage / rel).exists() and (keep_ours or rel not in made):
                    (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                    _link_or_copy(p, stage / rel)
                    if rel in made:
                        ours.add(rel)
        write_json(stage / MARKER, {"tool": "minitron-lab", "command": command, "files": sorted(ours)})
