"""Checks on model files before anything is loaded: each failure names the file and what is wrong.

  check_config(path)        config.json: UTF-8, strict JSON, an object with a ``model_type``
  safetensors_bytes(path)   a safetensors header that parses and covers the file exactly; the bytes
                            its tensors need in a given dtype (the memory check)
  check_gguf(path)          the GGUF magic and a header that parses, so a renamed text file or a
                            truncated download is named instead of failing deep inside the converter
  gguf_quantization(path)   what a GGUF's tensors are stored as (e.g. Q4_1), for provenance
  check_memory(need, dev)   refuse to allocate more than the device has free

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
(name -> {dtype, shape, data_offsets [begin, end)}), then the data; the largest ``end`` must equal
the data length, which is how a truncated file shows.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from analysis.core.errors import MinitronError
from analysis.core.io import read_json

ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
            "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
MAX_HEADER = 100 << 20  # safetensors itself refuses headers above 100 MB


def check_config(path: Path) -> dict:
    """The parsed config.json of a model directory, or a one-line error naming it."""
    doc = read_json(path, "model config")
    if not isinstance(doc, dict) or not isinstance(doc.get("model_type"), str):
        raise MinitronError(f"{path}: corrupt model config: no 'model_type' (a transformers config.json names "
                            "its architecture)")
    return doc


def safetensors_header(path: Path) -> dict:
    """The header of a safetensors file (name -> dtype, shape, offsets), checked against the file size."""
    size = path.stat().st_size
    bad = f"{path}: corrupt safetensors file"
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise MinitronError(f"{bad}: {size} bytes, shorter than its 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or 8 + n > size:
            raise MinitronError(f"{bad}: header of {n} bytes does not fit in {size} bytes (truncated or not safetensors)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise MinitronError(f"{bad}: the header is not JSON (truncated or not safetensors)") from None
    if not isinstance(header, dict):
        raise MinitronError(f"{bad}: the header is not a JSON object")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    try:
        end = max((int(v["data_offsets"][1]) for v in tensors.values()), default=0)
    except (KeyError, TypeError, ValueError, IndexError):
        raise MinitronError(f"{bad}: a tensor entry has no valid data_offsets") from None
    if end != size - 8 - n:
        raise MinitronError(f"{bad}: the header describes {end} bytes of tensors but the file holds {size - 8 - n} "
                            "(truncated or damaged download)")
    return tensors


def safetensors_bytes(paths: list[Path], dtype: torch.dtype) -> int:
    """Bytes the floating-point tensors of ``paths`` take in ``dtype`` (integers keep their size)."""
    item = torch.empty((), dtype=dtype).element_size()
    total = 0
    for path in paths:
        for entry in safetensors_header(path).values():
            numel = 1
            for d in entry.get("shape", []):
                numel *= int(d)
            total += numel * (item if str(entry.get("dtype", "")).startswith(("F", "BF")) else
                              ITEMSIZE.get(entry.get("dtype"), 4))
    return total


def check_gguf(path: Path) -> None:
    """A GGUF file starts with b'GGUF', a version, the tensor count and the metadata count."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:4] != b"GGUF":
        raise MinitronError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes)")
    if len(head) < 24 or size < 1024:
        raise MinitronError(f"{path}: corrupt GGUF file: {size} bytes, truncated")


def gguf_quantization(path: Path) -> dict:
    """{'file_type': 'Q4_1', 'tensor_types': {'Q4_1': 210, 'F32': 61, ...}} read from a GGUF's metadata."""
    from collections import Counter

    import gguf

    reader = gguf.GGUFReader(path)
    field = reader.fields.get("general.file_type")
    file_type = None
    if field is not None:
        value = int(field.parts[field.data[0]][0])
        try:
            file_type = gguf.LlamaFileType(value).name.removeprefix("MOSTLY_")
        except ValueError:
            file_type = str(value)
    counts = Counter(t.tensor_type.name for t in reader.tensors)
    return {"file_type": file_type, "tensor_types": dict(counts.most_common())}


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device``: CUDA's free bytes, or MemAvailable on a Linux host (None: unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(need: int, device: torch.device, what: str) -> None:
    """Refuse, before allocating, a model that needs more than the device has free."""
    free = available_bytes(device)
    if free is not None and need > free:
        raise MinitronError(f"{what} needs {need / 2**30:.1f} GiB on {device} but only {free / 2**30:.1f} GiB is "
                            "free; use a smaller model or dtype (--dtype bfloat16), another device, or "
                            "--device-map auto on GPUs")
