"""Shared test helpers: tiny random decoders built from configs, synthetic analysis runs, the CLI.

Fixtures live in ``conftest.py``; everything here is a plain function, imported as ``tests.helpers``.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from analysis.importance.results import AGGREGATIONS, write_run
from analysis.models.configs import to_hf_config
from analysis.models.registry import Architecture

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"

TINY = {
    "nemotron": Architecture(family="nemotron", layers=4, hidden=32, heads=4, kv_heads=2, head_dim=8, mlp=48,
                             vocab=97, activation="relu2", norm="layernorm1p", rotary_fraction=0.5,
                             max_positions=128, tied_embeddings=False),
    "llama": Architecture(family="llama", layers=4, hidden=32, heads=4, kv_heads=2, head_dim=8, mlp=40,
                          vocab=89, activation="silu", norm="rmsnorm", max_positions=128, tied_embeddings=True),
}
FAMILIES = tuple(TINY)


# --- tiny models ------------------------------------------------------------------------------------
def tiny_model(family: str, seed: int = 0, **arch_changes) -> torch.nn.Module:
    """A tiny random decoder in float32 whose norms are perturbed (so LayerNorm1P/RMSNorm weights matter)."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(to_hf_config(TINY[family].replace(**arch_changes)), dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def save_tiny_dir(path: Path, family: str, tokenizer, seed: int = 0, **arch_changes) -> torch.nn.Module:
    """A tiny random model with the embedded default's vocabulary, saved as a normal HF directory with ``tokenizer``."""
    from analysis.models.loading import save_safetensors

    model = tiny_model(family, seed=seed, vocab=len(tokenizer), **arch_changes)
    path.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(path)
    save_safetensors(model, path)
    tokenizer.save_pretrained(path)
    return model


def train_bpe(vocab: int = 4096):
    """A byte-level BPE tokenizer trained on Python's own documentation in about two seconds.

    For machines without the embedded default (the GPU image has no ``gguf`` to read its GGUF).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from analysis.data import pydoc_documents

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(pydoc_documents(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


def random_ids(vocab: int, n: int, t: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (n, t), generator=torch.Generator().manual_seed(seed))


# --- synthetic analysis runs ------------------------------------------------------------------------
SYNTHETIC = Architecture(family="nemotron", layers=8, hidden=64, heads=8, kv_heads=2, head_dim=8, mlp=96,
                         vocab=97, activation="relu2", norm="layernorm1p", rotary_fraction=0.5, max_positions=128)


def synthetic_tensors(arch: Architecture, block_sizes=(1, 2, 4, 8), seed: int = 0) -> dict[str, torch.Tensor]:
    """Every tensor an analysis run holds, with the documented shapes (``analysis.importance.results``)."""
    g = torch.Generator().manual_seed(seed)
    L, H, F, D = arch.layers, arch.heads, arch.mlp, arch.hidden
    base = {"heads": torch.rand(L, H, generator=g), "neurons": torch.rand(L, F, generator=g) ** 2,
            "channels": torch.rand(D, generator=g).exp()}
    t = dict(base)
    for b in AGGREGATIONS:
        for s in AGGREGATIONS:
            for axis, v in base.items():  # correlated with the default, as real aggregations are
                t[f"{axis}.{b}_{s}"] = v + 0.3 * torch.rand(v.shape, generator=g) * v.mean()
    t["channels.per_norm"] = torch.rand(2 * L, D, generator=g)
    edge = torch.linspace(-1, 1, L).abs()  # first and last layers matter most
    t["block_importance"] = 0.05 + 0.3 * edge + 0.02 * torch.rand(L, generator=g)
    t["drop_layer_loss"] = 3.0 + 2.0 * edge + 0.1 * torch.rand(L, generator=g)
    for k in block_sizes:
        if k <= L:
            n = L - k + 1
            t[f"angular.n{k}"] = (0.1 + 0.05 * k + 0.1 * torch.rand(n, generator=g)).clamp(max=0.5)
            block = 3.0 + 0.5 * k + torch.rand(n, generator=g)
            t[f"drop_block_loss.n{k}"] = t["drop_layer_loss"].clone() if k == 1 else block
    return t


def synthetic_metrics(arch: Architecture, tensors: dict, name: str = "tiny-synthetic") -> dict:
    """A metrics.json dict of the engine's schema, consistent with ``tensors``."""
    L, loss = arch.layers, 3.0
    drop = tensors["drop_layer_loss"].tolist()
    blocks = {}
    for key in sorted(k for k in tensors if k.startswith("drop_block_loss.n")):
        k = key.split(".n")[1]
        blocks[k] = {"start": list(range(len(tensors[key]))), "loss": tensors[key].tolist(),
                     "angular": tensors[f"angular.n{k}"].tolist()}
    return {
        "run_id": "20250101-000000-test", "created": "2025-01-01T00:00:00+00:00",
        "model": {"name": name, "ref": name, "kind": "random-init", "hf_id": None,
                  "weights_fingerprint": "random-init(seed=0)", "params": arch.params()["total"],
                  "dtype": "float32", "device": "cpu"},
        "architecture": asdict(arch),
        "data": {"source": "pydoc", "protocol": "pydoc windows v1",
                 "config": {"seq_len": 32, "calib_samples": 4, "eval_samples": 2, "seed": 0},
                 "stream_tokens": 4096, "calib_sha256": "ab" * 8, "eval_sha256": "cd" * 8},
        "config": {"block_sizes": [int(k) for k in blocks], "batch_size": 2, "pre_activation": False},
        "eval": {"loss": loss, "perplexity": 20.09, "tokens_scored": 62, "protocol": "next-token, no BOS"},
        "layers": [{"layer": i, "block_importance": float(tensors["block_importance"][i]), "drop_loss": drop[i],
                    "drop_perplexity": float(torch.tensor(drop[i]).exp()), "delta_loss": drop[i] - loss}
                   for i in range(L)],
        "blocks": blocks,
        "rank_agreement": {"spearman_bi_vs_drop_loss": 0.9},
        "timings": {"load_s": 0.1, "calibration_s": 0.2, "eval_s": 0.1, "sensitivity_s": 0.3, "total_s": 0.7},
        "versions": {"torch": torch.__version__, "transformers": "5", "python": "3", "minitron_lab": "0.1.0"},
    }


def synthetic_run(path: Path, arch: Architecture = SYNTHETIC, name: str = "tiny-synthetic") -> Path:
    """Write a synthetic run directory and return its path."""
    tensors = synthetic_tensors(arch)
    return write_run(Path(path), tensors, synthetic_metrics(arch, tensors, name))


# --- the command line -------------------------------------------------------------------------------
@dataclass
class CliResult:
    code: int  # exit code
    out: str  # stdout
    err: str  # stderr

    @property
    def error_lines(self) -> list[str]:
        """stderr lines that are ours (progress bars of loading aside)."""
        return [line for line in self.err.splitlines() if line.startswith("error:")]


def run_cli(*args: str) -> CliResult:
    """The command line in this process (``cli.run``): the same error formatting and exit codes users get."""
    from cli import run

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run([str(a) for a in args])
    return CliResult(code, out.getvalue(), err.getvalue())


def cli_subprocess(*args: str, cwd: Path = ROOT, timeout: int = 600, env: dict | None = None) -> CliResult:
    """The real entry point in a fresh interpreter: what ``python cli.py ...`` does from a shell."""
    import os

    env = os.environ | {"OMP_NUM_THREADS": "1"} | (env or {})
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, timeout=timeout, env=env, check=False)
    return CliResult(r.returncode, r.stdout, r.stderr)


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (relative name -> bytes): compare before and after to prove nothing changed."""
    path = Path(path)
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# --- a second device on a CPU-only machine ----------------------------------------------------------
class ElsewhereTensor(torch.Tensor):
    """A CPU tensor that behaves as if it lived on another device (an accelerator on CI, which has none).

    As with CUDA, an operation mixing it with a plain CPU tensor of one or more dimensions raises;
    ``.cpu()`` and ``.to("cpu")`` return a plain tensor. Results of operations on it stay "elsewhere".
    """

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        leaving = name == "cpu" or (name == "to" and any(str(a) == "cpu" for a in [*args[1:], kwargs.get("device")]))
        tensors = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        here = [t for t in tensors if not isinstance(t, cls) and t.dim() > 0]
        if not leaving and here and len(here) < len(tensors):
            raise RuntimeError(f"{func.__name__}: expected all tensors to be on the same device, but found at "
                               "least two devices, elsewhere and cpu")
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs)
        if leaving:  # on a CPU-backed stand-in, .cpu() returns the object itself: hand back a plain view
            return out.as_subclass(torch.Tensor)
        return torch.utils._pytree.tree_map_only(torch.Tensor, lambda t: t.as_subclass(cls), out)


def elsewhere(t: torch.Tensor) -> torch.Tensor:
    return t.as_subclass(ElsewhereTensor)


def lm_eval_rolling(model, tokenizer, text: str, seq_len: int, batch_size: int) -> dict:
    """lm-evaluation-harness 0.4.x itself on our model object: ``loglikelihood_rolling`` of one document,
    then its wikitext metrics (the reference for our ``lm-eval`` perplexity protocol)."""
    import math

    from lm_eval.api.instance import Instance
    from lm_eval.api.metrics import bits_per_byte, weighted_perplexity
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks.wikitext.preprocess_wikitext import process_results

    lm = HFLM(pretrained=model, tokenizer=tokenizer, max_length=seq_len, batch_size=batch_size, device="cpu")
    request = Instance(request_type="loglikelihood_rolling", doc={"page": text}, arguments=(text,), idx=0)
    (ll,) = lm.loglikelihood_rolling([request], disable_tqdm=True)
    items = process_results({"page": text}, [ll])
    n = len(lm.tok_encode(text))
    return {"nll": -ll, "tokens": n, "token_perplexity": math.exp(-ll / n),
            "word_perplexity": weighted_perplexity([items["word_perplexity"]]),
            "byte_perplexity": weighted_perplexity([items["byte_perplexity"]]),
            "bits_per_byte": bits_per_byte([items["bits_per_byte"]])}
