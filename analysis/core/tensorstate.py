"""Nested training state (optimizer, scheduler, RNG, history) as JSON + safetensors: nothing is unpickled.

``torch.save`` writes a pickle, and loading a pickle can run code (``weights_only=True`` narrows
that to an allow-list; this module removes the question). ``pack`` walks a structure of dicts,
lists, tuples, strings, numbers, booleans, None and tensors and returns a JSON document, with
every tensor replaced by ``{"__tensor__": "t<n>"}`` and collected by name for one safetensors
file. Types JSON lacks are tagged: ``{"__tuple__": [...]}``, ``{"__items__": [[key, value], ...]}``
for dicts with non-string keys (an optimizer's integer parameter ids), ``{"__float__": "nan"}``
for non-finite floats. ``unpack`` reverses it exactly; an unknown tag or missing tensor is an error.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from analysis.core.errors import MinitronError, one_line
from analysis.core.io import read_json, write_json

TAGS = ("__tensor__", "__tuple__", "__items__", "__float__")


def pack(obj, tensors: dict[str, torch.Tensor] | None = None) -> tuple[object, dict[str, torch.Tensor]]:
    """(JSON-able document, name -> tensor) for ``obj`` (module docstring)."""
    tensors = {} if tensors is None else tensors
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": name}, tensors
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj, tensors
    if isinstance(obj, float):
        return (obj if math.isfinite(obj) else {"__float__": str(obj)}), tensors
    if isinstance(obj, (list, tuple)):
        items = [pack(x, tensors)[0] for x in obj]
        return (items if isinstance(obj, list) else {"__tuple__": items}), tensors
    if isinstance(obj, dict):
        if all(isinstance(k, str) and k not in TAGS for k in obj):
            return {k: pack(v, tensors)[0] for k, v in obj.items()}, tensors
        return {"__items__": [[pack(k, tensors)[0], pack(v, tensors)[0]] for k, v in obj.items()]}, tensors
    raise TypeError(f"cannot store a {type(obj).__name__} in a training state (tensors, numbers, text only)")


def unpack(doc, tensors: dict[str, torch.Tensor]):
    """The object ``pack`` was given."""
    if isinstance(doc, list):
        return [unpack(x, tensors) for x in doc]
    if not isinstance(doc, dict):
        return doc
    if "__tensor__" in doc:
        return tensors[doc["__tensor__"]]
    if "__tuple__" in doc:
        return tuple(unpack(x, tensors) for x in doc["__tuple__"])
    if "__items__" in doc:
        return {unpack(k, tensors): unpack(v, tensors) for k, v in doc["__items__"]}
    if "__float__" in doc:
        return float(doc["__float__"])
    return {k: unpack(v, tensors) for k, v in doc.items()}


def save_state(obj, json_path: Path, tensors_path: Path) -> None:
    """Write ``obj`` as ``json_path`` (structure) + ``tensors_path`` (safetensors)."""
    from safetensors.torch import save_file

    doc, tensors = pack(obj)
    save_file(tensors, str(tensors_path))
    write_json(json_path, {"format": "minitron-lab tensorstate 1", "state": doc})


def load_state(json_path: Path, tensors_path: Path, what: str = "training state"):
    """Read what ``save_state`` wrote; a damaged file is a one-line error naming it."""
    from safetensors.torch import load_file

    doc = read_json(json_path, what)
    if not isinstance(doc, dict) or doc.get("format") != "minitron-lab tensorstate 1" or "state" not in doc:
        raise MinitronError(f"{json_path}: corrupt {what}: not a minitron-lab state document")
    try:
        tensors = load_file(str(tensors_path))
    except Exception as exc:  # noqa: BLE001 - safetensors has its own error types for damaged files
        raise MinitronError(f"{tensors_path}: corrupt {what} ({one_line(exc)})") from None
    try:
        return unpack(doc["state"], tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise MinitronError(f"{json_path}: corrupt {what}: {type(exc).__name__} {one_line(exc)}") from None
