"""Files the bad-input cases plant before running a command: damaged weights, configs, GGUFs, data,
runs, checkpoints, user files in output directories, and pickles that would run code if loaded.

Every planter takes (w, a): ``w`` the case's fresh working directory (the command runs there),
``a`` the shared assets (``Assets``: a tiny model directory with the default's tokenizer, a real
analysis run of it). Planters write only under ``w``.
"""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

PAYLOAD = "PWNED"  # the file a planted pickle would create if anything unpickled it


@dataclass
class Assets:
    tiny: Path  # llama-family tiny model directory (4 layers, hidden 32, 128 positions), read-only
    run: Path  # a real analysis run of ``tiny`` (block sizes 1, 2), read-only
    gguf: Path  # the embedded default's GGUF file (read-only, inside its package)


class Payload:
    """Unpickling this calls ``exec``: it writes ``<dir>/PWNED``. Only a loader that runs code would."""

    def __init__(self, directory: Path):
        self.code = f"open({str(Path(directory) / PAYLOAD)!r}, 'w').write('code from a file ran')"

    def __reduce__(self):
        return (exec, (self.code,))


def evil_torch(w: Path) -> bytes:
    """A torch.save file (zip + pickle) whose unpickling runs the payload."""
    import io

    buf = io.BytesIO()
    torch.save({"weight": Payload(w)}, buf)
    return buf.getvalue()


def evil_pickle(w: Path) -> bytes:
    """A bare pickle whose unpickling runs the payload."""
    return pickle.dumps(Payload(w))


def model_copy(w: Path, a: Assets, name: str = "m") -> Path:
    return Path(shutil.copytree(a.tiny, w / name))


def run_copy(w: Path, a: Assets, name: str = "run") -> Path:
    return Path(shutil.copytree(a.run, w / name))


def user_file(path: Path, text: str = "the user's own work\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- model directories -----------------------------------------------------------------------------
def weights(content):
    """A copy of the tiny model whose model.safetensors is replaced by ``content(w, original bytes)``."""
    def plant(w: Path, a: Assets) -> None:
        f = model_copy(w, a) / "model.safetensors"
        f.write_bytes(content(w, f.read_bytes()))
    return plant


def config(text: str | bytes):
    def plant(w: Path, a: Assets) -> None:
        f = model_copy(w, a) / "config.json"
        f.write_bytes(text if isinstance(text, bytes) else text.encode())
    return plant


def config_patch(**changes):
    """A copy whose config.json has fields changed (e.g. an unknown model_type or a wrong shape)."""
    def plant(w: Path, a: Assets) -> None:
        f = model_copy(w, a) / "config.json"
        doc = json.loads(f.read_text()) | changes
        f.write_text(json.dumps(doc))
    return plant


def only_bin(evil: bool):
    """A copy with pickle weights only: a plain state dict, or one that runs the payload."""
    def plant(w: Path, a: Assets) -> None:
        d = model_copy(w, a)
        (d / "model.safetensors").unlink()
        if evil:
            (d / "pytorch_model.bin").write_bytes(evil_torch(w))
        else:
            from safetensors.torch import load_file

            torch.save(load_file(str(a.tiny / "model.safetensors")), d / "pytorch_model.bin")
    return plant


def no_weights(w: Path, a: Assets) -> None:
    (model_copy(w, a) / "model.safetensors").unlink()


def no_config(w: Path, a: Assets) -> None:
    (model_copy(w, a) / "config.json").unlink()


def tokenizer_garbage(w: Path, a: Assets) -> None:
    (model_copy(w, a) / "tokenizer.json").write_bytes(b"\x00\x01 not a tokenizer \xff")


def gguf(content):
    def plant(w: Path, a: Assets) -> None:
        (w / "model.gguf").write_bytes(content(w, a))
    return plant


def text_file(name: str, data: bytes):
    def plant(w: Path, a: Assets) -> None:
        p = w / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return plant


# --- runs ------------------------------------------------------------------------------------------
def run_file(name: str, content):
    """A copy of the run with one file replaced by ``content(w, original bytes)``."""
    def plant(w: Path, a: Assets) -> None:
        f = run_copy(w, a) / name
        f.write_bytes(content(w, f.read_bytes()))
    return plant


def run_metrics(change):
    """A copy of the run whose metrics.json is changed by ``change(doc)`` (returns the new text)."""
    def plant(w: Path, a: Assets) -> None:
        f = run_copy(w, a) / "metrics.json"
        f.write_text(change(json.loads(f.read_text())))
    return plant


def run_tensors(change):
    """A copy of the run whose importance tensors are changed by ``change(dict)``."""
    def plant(w: Path, a: Assets) -> None:
        from safetensors.torch import load_file, save_file

        f = run_copy(w, a) / "importance.safetensors"
        save_file(change(load_file(str(f))), str(f))
    return plant


def registry_run(without_sensitivity: bool = False, damaged: bool = False):
    """A run filed under runs/smollm2-135m/ (the registry name a card looks up): a copy of the tiny
    run under that name, optionally without its drop losses, optionally damaged."""
    def plant(w: Path, a: Assets) -> None:
        from safetensors.torch import load_file, save_file

        d = Path(shutil.copytree(a.run, w / "runs" / "smollm2-135m" / "r1"))
        doc = json.loads((d / "metrics.json").read_text())
        doc["model"]["name"] = "smollm2-135m"
        if without_sensitivity:
            doc["layers"] = [{"layer": r["layer"], "block_importance": r["block_importance"]} for r in doc["layers"]]
            doc["rank_agreement"] = {}
            for b in doc["blocks"].values():
                b.pop("loss", None)
            t = load_file(str(d / "importance.safetensors"))
            save_file({k: v for k, v in t.items() if "drop" not in k}, str(d / "importance.safetensors"))
        (d / "metrics.json").write_text("{ damaged" if damaged else json.dumps(doc))
    return plant


# --- checkpoints -----------------------------------------------------------------------------------
def analysis_checkpoint(argv_cfg, damage):
    """An interrupted analysis of the tiny model (the same settings as the case's command), with its
    checkpoint damaged by ``damage(checkpoint_dir, w)``."""
    def plant(w: Path, a: Assets) -> None:
        from analysis.importance.pipeline import RunInterrupted, run_analysis

        try:
            run_analysis(argv_cfg(a), out=w / "out", stop_after=1)
        except RunInterrupted:
            pass
        damage(w / ".out.partial", w)
    return plant


def distill_out(files: dict):
    """An output directory made by distill (marker) holding checkpoint files ``name -> content(w)``."""
    def plant(w: Path, a: Assets) -> None:
        from analysis.core.io import claim

        claim(w / "out", "distill")
        for name, content in files.items():
            p = w / "out" / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content(w))
    return plant


def both(*planters):
    def plant(w: Path, a: Assets) -> None:
        for p in planters:
            p(w, a)
    return plant


# --- templates -------------------------------------------------------------------------------------
def template(text: str | bytes, name: str = "card.j2"):
    return text_file(name, text if isinstance(text, bytes) else text.encode())


# --- the commands of issues 11, 12 and 14: perplexity, search, evaluate, compare, experiment ----------------
def other_vocab(name: str = "other"):
    """A tiny model whose vocabulary is 64 tokens larger than the shared one's (another tokenizer's model)."""
    def plant(w: Path, a: Assets) -> None:
        from analysis.models.loading import save_safetensors
        from tests.helpers import tiny_model

        model = tiny_model("llama", vocab=json.loads((a.tiny / "config.json").read_text())["vocab_size"] + 64)
        (w / name).mkdir()
        model.config.save_pretrained(w / name)
        save_safetensors(model, w / name)
    return plant


def student_record(name: str, text: str):
    """A copy of the tiny model (``{m}``) holding a record a student directory carries (prune_recipe.json,
    distill.json) with ``text`` as its contents."""
    def plant(w: Path, a: Assets) -> None:
        (model_copy(w, a) / name).write_text(text)
    return plant


def eval_run(text: str, model: str = "smollm2-135m"):
    """An evaluate run filed under runs/<model>/eval-damaged/ whose evaluation.json holds ``text``."""
    def plant(w: Path, a: Assets) -> None:
        user_file(w / "runs" / model / "eval-damaged" / "evaluation.json", text)
    return plant


README_WITH_MARKERS = "# Results\n\n<!-- results:begin -->\nold\n<!-- results:end -->\n"


def experiment_results(files: dict[str, str], readme: str = README_WITH_MARKERS):
    """A results folder ``res/`` with ``name -> contents`` and a README.md whose section --report rewrites."""
    def plant(w: Path, a: Assets) -> None:
        for name, text in files.items():
            user_file(w / "res" / name, text)
        user_file(w / "README.md", readme)
    return plant
