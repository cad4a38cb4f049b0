"""Rebuild ``minitron_cloze.jsonl``: last-word prediction on sentences from Python's standard-library docstrings.

    python -m analysis.evaluation.tasks.build_cloze

Sentences come from the docstrings of a fixed list of modules and their public members (Python
3.11 built it; other versions word some docstrings differently, which is why the file is
committed rather than rebuilt at run time). A sentence is kept when it has 8 to 30 words and
ends in a plain word of at least 4 letters; the context is the sentence without its last word,
the target is that word. Sentences that occur in ``pydoc_data.topics`` (the default text that
``analyze``, ``prune`` and ``distill`` calibrate and train on) are dropped, so the task never
scores text a student was distilled on. At most ``PER_MODULE`` sentences per module, in the
order the docstrings are read.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path

MODULES = ("abc", "argparse", "array", "base64", "bisect", "calendar", "collections", "contextlib", "copy", "csv",
           "dataclasses", "datetime", "decimal", "difflib", "enum", "fractions", "functools", "glob", "gzip",
           "hashlib", "heapq", "hmac", "inspect", "io", "itertools", "json", "logging", "math", "mimetypes",
           "operator", "os", "pathlib", "pickle", "pprint", "queue", "random", "re", "sched", "secrets", "shelve",
           "shlex", "shutil", "socket", "sqlite3", "statistics", "string", "struct", "subprocess", "tarfile",
           "tempfile", "textwrap", "threading", "timeit", "tokenize", "traceback", "types", "typing", "unittest",
           "uuid", "warnings", "weakref", "zipfile", "zlib")
PER_MODULE = 4
OUT = Path(__file__).with_name("minitron_cloze.jsonl")
SENTENCE = re.compile(r"(?<=[.!?])\s+")
LAST_WORD = re.compile(r"^(?P<context>.+\S)\s+(?P<target>[A-Za-z]{4,})\.$")


def docstrings(name: str) -> list[str]:
    """The module's docstring, then its public members' docstrings in sorted name order."""
    module = importlib.import_module(name)
    docs = [inspect.getdoc(module) or ""]
    for attr in sorted(a for a in dir(module) if not a.startswith("_")):
        obj = getattr(module, attr, None)
        if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj):
            docs.append(inspect.getdoc(obj) or "")
    return docs


def sentences(doc: str) -> list[str]:
    """Prose sentences of a docstring: paragraphs joined into lines, code and doctest lines skipped."""
    out = []
    for para in doc.split("\n\n"):
        if any(line.startswith((" ", ">>>", "...")) for line in para.splitlines()):
            continue
        out += SENTENCE.split(" ".join(para.split()))
    return out


def items(seen_text: str) -> list[dict]:
    rows, used = [], set()
    for name in MODULES:
        kept = 0
        for doc in docstrings(name):
            for s in sentences(doc):
                m = LAST_WORD.match(s)
                if not m or not 8 <= len(s.split()) <= 30 or s in used or s in seen_text:
                    continue
                used.add(s)
                rows.append({"module": name, "context": m["context"], "target": m["target"]})
                kept += 1
                if kept == PER_MODULE:
                    break
            if kept == PER_MODULE:
                break
    return rows


def main() -> None:
    from analysis.data import pydoc_documents

    seen = " ".join(" ".join(d.split()) for d in pydoc_documents())
    rows = items(seen)
    OUT.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} sentences -> {OUT}")


if __name__ == "__main__":
    main()
