"""Side by side: our lm-eval perplexity protocol and lm-evaluation-harness itself, same model object, same text.

    python benchmarks/perplexity_vs_lm_eval.py [--model smollm2-135m] [--max-chars 200000] [--seq-len 512]

Scores the first ``--max-chars`` characters of the data source (default pydoc, one document) with
``analysis.evaluation.perplexity`` (protocol ``lm-eval``) and with lm-evaluation-harness's HFLM
``loglikelihood_rolling`` plus its wikitext metrics, and prints both with their relative difference.
Needs the dev extra (lm-eval). The test suite checks the same on a short text
(``tests/evaluation/test_perplexity.py``); this is the full-length check.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from analysis.data import DataConfig, corpus_text
from analysis.evaluation.perplexity import perplexity
from analysis.models.loading import LoadConfig, load_model
from tests.helpers import lm_eval_rolling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default="pydoc")
    parser.add_argument("--max-chars", type=int, default=200_000)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a shared CPU: 1 avoids contention)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    text = corpus_text(DataConfig(source=args.data, max_chars=args.max_chars))
    lm = load_model(LoadConfig(model=args.model, device="cpu"))
    t0 = time.perf_counter()
    ours = perplexity(lm.model, lm.tokenizer, text, "lm-eval", args.seq_len, batch_size=args.batch_size).to_json()
    t1 = time.perf_counter()
    ref = lm_eval_rolling(lm.model, lm.tokenizer, text, args.seq_len, args.batch_size)
    t2 = time.perf_counter()
    print(f"{args.model} on {args.data}: {len(text):,} characters, window {args.seq_len}")
    print(f"{'':18}{'ours':>16}{'lm-eval':>16}{'relative diff':>16}")
    for key in ("tokens", "nll", "token_perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"):
        a, b = ours[key], ref[key]
        print(f"{key:18}{a:16.6f}{b:16.6f}{abs(a - b) / abs(b):16.2e}")
    print(f"time: ours {t1 - t0:.0f} s, lm-eval {t2 - t1:.0f} s")


if __name__ == "__main__":
    main()
