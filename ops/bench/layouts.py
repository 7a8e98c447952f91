"""The three forward layouts of the CPU worker by model size: where `RERANK_PACKED_FORWARD=auto` should switch.

For BERT cross-encoders of hidden size 32 (one layer, the overhead benchmark's near-free model) to 384 (two
layers; MiniLM's width), every layout of worker/model/runtime.py (FORWARD_LAYOUTS) scores the same pairs:
transformers' padded forward, and the worker's own forward over padded rows and over packed tokens. The pairs
are the overhead benchmark's (8-word queries, 8-24-word passages), cut into length-sorted token-budget
batches as the engine cuts them; every round draws new requests, so each pass meets shapes it has not seen
(oneDNN and the allocator do better on a shape they have), and the layouts take turns going first.
It reports microseconds per pair (median over the rounds) and each layout's speed against transformers'.

Usage: python -m ops.bench.layouts [--rounds 10] [--threads 1] [--budget 2048] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from ops.bench.overhead import make_bodies
from ops.bench.report import write_json
from ops.bench.workload import token_budget_batches
from ops.models.builder import minilm_dir
from shared.settings import Settings
from worker.model.runtime import FORWARD_LAYOUTS, CrossEncoder

SHAPES = ((32, 1, 64), (128, 2, 512), (256, 2, 1024), (384, 2, 1536))  # hidden, layers, intermediate


def build(out: Path, hidden: int, layers: int, intermediate: int) -> str:
    """A random BERT cross-encoder of that shape with MiniLM's WordPiece tokenizer."""
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_labels=1,
                        num_attention_heads=max(2, hidden // 64), intermediate_size=intermediate)  # fmt: skip
    torch.manual_seed(0)
    BertForSequenceClassification(config).eval().save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    return str(out)


def measure(model_dir: str, args: argparse.Namespace, passages: int) -> dict:
    """µs per pair of each layout on one model, over `args.rounds` rounds of 4 fresh requests."""
    encoder = CrossEncoder.load(Settings(model=model_dir, device="cpu", packed_forward="on"))
    for layout in FORWARD_LAYOUTS:  # warm up, as the engine does before its first request
        encoder.layout = layout
        encoder.warmup()
    per_pair: dict[str, list[float]] = {layout: [] for layout in FORWARD_LAYOUTS}
    largest_difference = 0.0
    for round_ in range(args.rounds):
        bodies = make_bodies(argparse.Namespace(requests=4, passages=passages, seed=args.seed + round_))
        pairs = [encoder.encode(query, texts, "END") for query, texts in bodies]
        batches = [p.take(rows) for p in pairs for rows in token_budget_batches(p.lengths.tolist(), args.budget)]
        order = FORWARD_LAYOUTS[round_ % 3:] + FORWARD_LAYOUTS[: round_ % 3]
        logits = {}
        for layout in order:
            encoder.layout = layout
            started = time.perf_counter()
            logits[layout] = np.concatenate([encoder.score(batch) for batch in batches])
            per_pair[layout].append(1e6 * (time.perf_counter() - started) / (4 * passages))
        want = logits["transformers"]
        largest_difference = max(largest_difference, *(float(np.abs(got - want).max()) for got in logits.values()))
    medians = {layout: statistics.median(values) for layout, values in per_pair.items()}
    return {
        "us_per_pair": {layout: round(value, 1) for layout, value in medians.items()},
        "speed_against_transformers": {layout: round(medians["transformers"] / value, 2) for layout, value in medians.items()},
        "rounds_us_per_pair": {layout: [round(v, 1) for v in values] for layout, values in per_pair.items()},
        "max_logit_difference": largest_difference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", type=int, default=2048, help="tokens per pass (longest pair x pairs)")
    parser.add_argument("--seed", type=int, default=200)
    parser.add_argument("--out", type=Path, help="directory for the JSON result")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "budget": args.budget, "rounds": args.rounds, "models": {}}
    with tempfile.TemporaryDirectory() as work:
        for hidden, layers, intermediate in SHAPES:
            model_dir = build(Path(work) / f"bert-{hidden}", hidden, layers, intermediate)
            passages = 512 if hidden < 256 else 128  # the larger models' rounds take as long
            name = f"hidden {hidden}, {layers} layer{'s' if layers > 1 else ''}"
            result["models"][name] = measure(model_dir, args, passages)
            print(name, result["models"][name]["us_per_pair"], result["models"][name]["speed_against_transformers"],
                  flush=True)  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(args.out, "layouts", result)


if __name__ == "__main__":
    main()
