"""Tokenizer CPU per pair on over-long passages, with and without the prefix cut (worker/text/prefix.py).

512-token-limit models fed `--words`-word passages (5,000 by default) under truncate=END, the way the
worker's Celery process tokenizes them (`CrossEncoder.encode`): `bert` (MiniLM's WordPiece), `xlmr` (a
Unigram tokenizer, XLM-R's specials), `qwen3` (the Qwen3-Reranker prompt recipe, byte-level BPE). For each,
`--requests` requests of `--passages` distinct passages, tokenized whole (`uncut`) and from prefixes (`cut`)
in alternating order, `--repeats` rounds; reported: process CPU time per pair (every thread's: with
TOKENIZERS_PARALLELISM on the tokenizer's Rust threads count too) and wall time per pair, medians. The
output names the TOKENIZERS_PARALLELISM it ran with (default here: on, as `rerank-fleet up` runs workers).

Usage: python -m ops.bench.tokenizer [--words 5000] [--passages 32] [--requests 4] [--repeats 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from ops.bench.jobs import vocabulary
from ops.bench.report import write_json
from ops.models.builder import BUILDERS

MODELS = {"bert": "bert", "xlmr": "xlmr", "qwen3": "qwen3-reranker"}


def measure(encoder, requests: list[tuple[str, list[str]]], cut: bool) -> dict:
    encoder.pairs.cut_long_passages = cut
    pairs = sum(len(passages) for _, passages in requests)
    cpu, wall = time.process_time(), time.perf_counter()
    for query, passages in requests:
        encoder.encode(query, passages, "END")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_us_per_pair": 1e6 * cpu / pairs, "wall_us_per_pair": 1e6 * wall / pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", type=int, default=5000)
    parser.add_argument("--passages", type=int, default=32)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    parallelism = os.environ["TOKENIZERS_PARALLELISM"]
    print(f"TOKENIZERS_PARALLELISM={parallelism}", flush=True)
    from shared.settings import Settings  # after the environment is set: tokenizers reads it when first used
    from worker.model.runtime import CrossEncoder

    words, rng = vocabulary(), random.Random(0)
    requests = [(" ".join(rng.choices(words, k=8)), [" ".join(rng.choices(words, k=args.words))
                                                      for _ in range(args.passages)]) for _ in range(args.requests)]  # fmt: skip
    result = {"settings": {**vars(args), "out": str(args.out)}, "tokenizers_parallelism": parallelism, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model_dir = BUILDERS[MODELS[name]](Path(tmp) / name, seed=0)
            encoder = CrossEncoder.load(Settings(model=str(model_dir), device="cpu"))
            measure(encoder, requests[:1], True)  # warm-up
            rounds = {"uncut": [], "cut": []}
            for repeat in range(args.repeats):
                for variant in (("uncut", "cut") if repeat % 2 == 0 else ("cut", "uncut")):
                    rounds[variant].append(measure(encoder, requests, variant == "cut"))
            median = {variant: {key: round(statistics.median(r[key] for r in runs), 1) for key in runs[0]}
                      for variant, runs in rounds.items()}  # fmt: skip
            median["cpu_ratio_uncut_over_cut"] = round(median["uncut"]["cpu_us_per_pair"] / median["cut"]["cpu_us_per_pair"], 2)
            result["models"][name] = {"max_seq_len": encoder.max_seq_len, "median": median}
            print(name, median, flush=True)
    if args.out:
        write_json(args.out, "tokenizer", result)
    print(f"TOKENIZERS_PARALLELISM={parallelism}: tokenizer CPU per pair, {args.words}-word passages, uncut -> cut: "
          + ", ".join(f"{n} {m['median']['uncut']['cpu_us_per_pair']:.0f} -> {m['median']['cut']['cpu_us_per_pair']:.0f} µs"
                      for n, m in result["models"].items()))  # fmt: skip


if __name__ == "__main__":
    main()
