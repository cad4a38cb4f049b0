"""A small random-init Nemotron directory whose tokenizer is a byte-level BPE trained on pydoc in seconds.

    python benchmarks/tiny_model.py OUT_DIR [--layers 8] [--hidden 512] [--vocab 4096]

For machines without the embedded default (the GPU image has no ``gguf`` to read its GGUF) and without
network: every command that needs a tokenizer (analyze on text, prune with perplexity, distill,
search --rank) can run on it. Its numbers mean nothing; its code paths are the real ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from analysis.models.configs import to_hf_config
    from analysis.models.registry import get
    from tests.helpers import train_bpe

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--mlp", type=int, default=1536)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    tokenizer = train_bpe(args.vocab)
    arch = get("15B").arch.replace(layers=args.layers, hidden=args.hidden, heads=args.heads, kv_heads=args.kv_heads,
                                   head_dim=args.hidden // args.heads, mlp=args.mlp, vocab=len(tokenizer))
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(to_hf_config(arch), dtype=torch.float32)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"{args.out}: random-init Nemotron, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
          f"vocabulary {len(tokenizer)}")


if __name__ == "__main__":
    main()
