"""Atomic writes: a file or directory appears complete or not at all. Every writer in the package uses these.

  atomic_file(path)         a temporary sibling file, renamed over ``path`` on success
  write_json / write_text   ``atomic_file`` for one document (JSON is strict: NaN or infinity is refused)
  read_json(path)           strict JSON back, a one-line error naming the file when it is not
  atomic_dir(target)        a temporary sibling directory that becomes ``target`` in one rename
  staged_files(target)      a temporary directory whose files move into ``target`` one rename each
                            (for adding files to a directory that holds other things, e.g. a card)

The output contract for user-facing directories (docs/outputs.md): ``check_output`` before computing
(new, empty or made by us, else ``--force``; writable), then ``output_dir`` to write a directory
whole, ``output_files`` to add files to one, or ``claim`` + ``record`` for a directory filled step
by step (distill). Each leaves the marker file listing what the toolkit wrote; anything else in the
directory is never deleted or overwritten.

On any exception the temporary file or directory is removed and the target is left as it was.
Temporaries are hidden siblings (``.<name>.tmp-*``) so a rename never crosses file systems; what
appears gets the permissions of an ordinary file or directory under the user's umask.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()
FILE_MODE = 0o666 & ~_UMASK  # what open() would have created (mkstemp makes 0600)
DIR_MODE = 0o777 & ~_UMASK  # what mkdir would have created (mkdtemp makes 0700)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
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
    """Write ``data`` as indented, strict JSON to ``path`` atomically; ``default`` converts other objects.

    NaN and infinity are refused (they are not JSON, and a number we write must have been measured).
    """
    try:
        text = json.dumps(data, indent=2, default=default, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"{path}: refusing to write a non-finite number ({exc})") from None
    return write_text(path, text + "\n")


def finite_or_none(obj):
    """``obj`` with every NaN or infinite float (in nested dicts, lists, tuples) replaced by None: a number
    that is undefined (a rank correlation of tied values, a standard error of one document) is written
    as null, never as a bare NaN, which is not JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return obj


def _no_constants(name: str):
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: str | Path, what: str = "JSON document"):
    """Strict JSON from ``path`` (NaN/Infinity refused); a one-line MinitronError naming the file otherwise."""
    from analysis.core.errors import MinitronError

    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constants)
    except FileNotFoundError:
        raise MinitronError(f"{path}: no such file (expected a {what})") from None
    except UnicodeDecodeError:
        raise MinitronError(f"{path}: corrupt {what}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise MinitronError(f"{path}: corrupt {what}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except ValueError as exc:
        raise MinitronError(f"{path}: corrupt {what}: {exc}") from None
    except OSError as exc:
        raise MinitronError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None


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
        os.chmod(tmp, DIR_MODE)
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


def _marker(target: Path) -> dict | None:
    """Our marker document in ``target``, or None when there is none (or it is not ours / unreadable)."""
    try:
        doc = json.loads((target / MARKER).read_text())
        return doc if doc.get("tool") == "minitron-lab" and isinstance(doc.get("files"), list) else None
    except (OSError, ValueError, AttributeError):
        return None


def _marker_files(target: Path) -> set[str] | None:
    """Relative names of the files our marker lists, or None when ``target`` holds no readable marker."""
    doc = _marker(target)
    return set(doc["files"]) if doc else None


def made_by_us(target: str | Path) -> bool:
    """Whether ``target`` is a directory holding our marker."""
    return Path(target).is_dir() and _marker(Path(target)) is not None


def check_writable(target: str | Path) -> None:
    """Create and remove a file where ``target`` is or would be created, so a read-only place fails
    before any work."""
    from analysis.core.errors import MinitronError

    target = Path(target)
    if target.exists() and not target.is_dir():
        raise MinitronError(f"cannot write to {target}: it is a file, not a directory")
    probe_dir = target if target.is_dir() else next((p for p in target.parents if p.exists()), Path("."))
    if not probe_dir.is_dir():
        raise MinitronError(f"cannot write to {target}: {probe_dir} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".minitron-lab-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise MinitronError(f"cannot write to {target}: {exc.strerror or exc}") from None


def check_output(target: str | Path, force: bool = False, files: Iterable[str] = ()) -> Path:
    """May a command write its output directory ``target``? Checked before any computation.

    Allowed: a new path, an empty directory, or a directory this toolkit made (its marker file is
    there). Anything else is refused unless ``force``; even then only the files the command writes are
    replaced, nothing else in the directory is touched. A path that is a file is always refused, and
    so is a place that cannot be written to. ``files``: names the command will write into a directory
    we made; one that exists there but is not ours (a README.md the user put in) needs ``force`` too.
    """
    from analysis.core.errors import MinitronError

    target = Path(target)
    if target.exists() and not target.is_dir():
        raise MinitronError(f"{target} is a file; the output must be a directory (new, empty, or made by minitron-lab)")
    if target.is_dir() and not force:
        ours = _marker_files(target)
        if ours is None and any(target.iterdir()):
            raise MinitronError(f"{target} is not empty and was not made by minitron-lab; choose a new directory, "
                                "or pass --force to write into it (only the files this command makes are replaced)")
        theirs = [f for f in files if (target / f).exists() and f not in (ours or set())]
        if theirs:
            raise MinitronError(f"{target / theirs[0]} was not made by minitron-lab; pass --force to replace it, "
                                "or choose another output directory")
    check_writable(target)
    return target


def _write_marker(target: Path, command: str, files: Iterable[str]) -> None:
    write_json(target / MARKER, {"tool": "minitron-lab", "command": command, "files": sorted(set(files))})


def _plain_modes(root: Path) -> None:
    """Give what we wrote under ``root`` ordinary permissions (some writers, safetensors among them, create
    0600 files): 0666 and 0777 minus the umask, like every other file of the run."""
    for p in root.rglob("*"):
        if not p.is_symlink():
            os.chmod(p, DIR_MODE if p.is_dir() else FILE_MODE)


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MARKER)


def _carry_foreign(target: Path, stage: Path, made: set[str]) -> None:
    """Copy into ``stage`` everything in ``target`` we did not make: files (hard links, no bytes copied),
    symbolic links (as links) and empty directories, so the directory swap loses nothing of the user's."""
    for root, dirs, names in os.walk(target, followlinks=False):
        base = Path(root)
        for name in names + [d for d in dirs if (base / d).is_symlink()]:
            src = base / name
            rel = str(src.relative_to(target))
            if rel in made or rel == MARKER or (stage / rel).exists() or (stage / rel).is_symlink():
                continue
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), stage / rel)
            else:
                _link_or_copy(src, stage / rel)
        for d in dirs:
            if not (base / d).is_symlink() and not any((base / d).iterdir()):
                (stage / (base / d).relative_to(target)).mkdir(parents=True, exist_ok=True)


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
        ours = set(_files_under(stage))
        _plain_modes(stage)  # ours only: the user's files are carried in below, modes untouched
        if target.is_dir():
            made = _marker_files(target) or set()
            _carry_foreign(target, stage, set() if keep_ours else made)
            if keep_ours:  # our earlier files that this call did not rewrite stay ours
                ours |= {f for f in made if (stage / f).is_file()}
        _write_marker(stage, command, ours)


@contextmanager
def output_files(target: str | Path, command: str, last: str | None = None) -> Iterator[Path]:
    """Yield a staging directory whose files are added to ``target`` (``staged_files``), and record
    them in its marker: for commands that add files to a directory (a card into a model directory,
    figures into a run). Files of the user's stay; call ``check_output(target, force, files)`` first."""
    target = Path(target)
    before = _marker(target) if target.is_dir() else None
    with staged_files(target, last=last) as stage:
        yield stage
        added = _files_under(stage)
        _plain_modes(stage)
    made = set(before["files"]) if before else set()
    _write_marker(target, before["command"] if before else command, made | set(added))


def claim(target: str | Path, command: str) -> Path:
    """Make ``target`` ours before a step-by-step write (distill): the directory and its marker, so an
    interrupted run's directory is recognised by ``--resume`` and by ``check_output``."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if _marker(target) is None:
        _write_marker(target, command, [])
    return target


def record(target: str | Path, files: Iterable[str]) -> None:
    """Add ``files`` (relative names, or directories: every file under them) to ``target``'s marker."""
    target = Path(target)
    doc = _marker(target) or {"command": "minitron-lab", "files": []}
    names = set(doc["files"])
    for f in files:
        p = target / f
        names |= {f"{f}/{q}" for q in _files_under(p)} if p.is_dir() else {str(f)}
    _write_marker(target, doc["command"], names)
