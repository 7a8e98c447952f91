"""Causal-LM reranker scoring: the needed output rows (worker/model/token_logits.py) against the full-vocabulary forward.

Three ways to get z(yes) - z(no) at each sequence's last token, on a model of Qwen3-Reranker-0.6B's shape
(random weights; 151,669-token vocabulary, tied embeddings):
- `rows`: what the worker does: the decoder's last hidden state of each right-padded sequence against the
  one float32 vector W[yes] - W[no];
- `naive`: the model card's way: the LM's logits for every token of the vocabulary at every position
  (`model(...).logits`), then the two columns at the last position;
- `last`: the best plain transformers does: left padding and `logits_to_keep=1`, so the full vocabulary
  at the last position only.

Peak memory: each way in a fresh process, the growth of its peak resident memory over one forward pass
(VmHWM, reset through /proc/self/clear_refs just before). Speed: pairs per second of `rows` and `naive`
in one process, timed back to back and alternately, so the shared machine's load hits them alike.

Usage: python -m ops.bench.token_logits [--layers 28] [--pairs 8] [--tokens 512] [--repeats 3] [--threads N]
       [--memory-only] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import transformers

from worker.model.token_logits import TokenLogits

# Qwen/Qwen3-Reranker-0.6B's config.json (random weights here)
QWEN3_0_6B = dict(
    vocab_size=151_669, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
    num_key_value_heads=8, head_dim=128, max_position_embeddings=40960, tie_word_embeddings=True, rms_norm_eps=1e-6,
)  # fmt: skip
YES, NO = 9693, 2152  # Qwen3's ids of "yes" and "no"
WAYS = ("rows", "naive", "last")


def build(layers: int) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.Qwen3Config(**{**QWEN3_0_6B, "num_hidden_layers": layers})
    return transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()


def batch(pairs: int, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids of `pairs` sequences from tokens/2 to `tokens` long, and their mask."""
    generator = torch.Generator().manual_seed(1)
    lengths = torch.linspace(tokens // 2, tokens, pairs).long()
    mask = (torch.arange(tokens)[None, :] < lengths[:, None]).long()
    return torch.randint(0, 150_000, (pairs, tokens), generator=generator) * mask, mask


def scorer(way: str, model: torch.nn.Module):
    """A function of right-padded (ids, mask) giving z(yes) - z(no) per sequence, the `way` named."""
    if way == "rows":
        return TokenLogits.of(model, YES, NO)

    def naive(input_ids, mask):
        logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits  # [B, T, vocab]
        last = logits[torch.arange(len(mask)), mask.sum(1) - 1].float()
        return last[:, YES] - last[:, NO]

    def last(input_ids, mask):
        lengths = mask.sum(1)
        shift = (mask.shape[1] - lengths)[:, None]  # move each sequence to the right: left padding
        order = (torch.arange(mask.shape[1])[None, :] - shift) % mask.shape[1]
        left_ids, left_mask = input_ids.gather(1, order), mask.gather(1, order)
        logits = model(input_ids=left_ids, attention_mask=left_mask, use_cache=False, logits_to_keep=1).logits[:, -1]
        return logits[:, YES].float() - logits[:, NO].float()

    return naive if way == "naive" else last


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_child(way: str, layers: int, pairs: int, tokens: int) -> dict:
    """In this (fresh) process: the growth of peak RSS over one forward pass of `way`."""
    model = build(layers)
    score = scorer(way, model)
    input_ids, mask = batch(pairs, tokens)
    with torch.inference_mode():
        score(input_ids[:1, :8], mask[:1, :8])  # lazy initialisation out of the measured pass
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        before = _rss_kib("VmRSS")
        score(input_ids, mask)
        peak = _rss_kib("VmHWM")
    return {"way": way, "peak_growth_mib": round((peak - before) / 1024, 1)}


def speed(layers: int, pairs: int, tokens: int, repeats: int) -> dict:
    """Pairs per second of `rows` and `naive`, timed back to back `repeats` times (the order alternating); the
    speed-up is the median of the back-to-back ratios, which the shared machine's load changes least."""
    model = build(layers)
    input_ids, mask = batch(pairs, tokens)
    scorers = {way: scorer(way, model) for way in ("rows", "naive")}
    seconds: dict[str, list[float]] = {way: [] for way in scorers}
    with torch.inference_mode():
        results = {way: score(input_ids, mask) for way, score in scorers.items()}  # warm-up, and agreement
        for repeat in range(repeats):
            for way in ("rows", "naive") if repeat % 2 == 0 else ("naive", "rows"):
                started = time.perf_counter()
                scorers[way](input_ids, mask)
                seconds[way].append(time.perf_counter() - started)
    best = {way: min(values) for way, values in seconds.items()}
    ratios = [naive / rows for rows, naive in zip(seconds["rows"], seconds["naive"])]
    return {
        "pairs_per_second": {way: round(pairs / value, 3) for way, value in best.items()},
        "rows_speedup_median": round(statistics.median(ratios), 3),
        "rows_speedup_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "max_abs_difference": float((results["rows"] - results["naive"]).abs().max()),
        "seconds": {way: [round(s, 3) for s in values] for way, values in seconds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=28, help="decoder layers (Qwen3-Reranker-0.6B: 28)")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=512, help="the longest sequence; they range from half of it")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice, the cores)")
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--out", help="directory for a JSON record")
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = dict(layers=args.layers, pairs=args.pairs, tokens=args.tokens)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(peak_child(args.child, **shape)))
        return
    record = {"shape": {**QWEN3_0_6B, "num_hidden_layers": args.layers}, "batch": shape, "threads": torch.get_num_threads()}
    memory = []
    for way in WAYS:
        argv = [sys.executable, "-m", "ops.bench.token_logits", "--child", way, "--layers", str(args.layers),
                "--pairs", str(args.pairs), "--tokens", str(args.tokens)]  # fmt: skip
        memory.append(json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()[-1]))
        print(json.dumps(memory[-1]), flush=True)
    record["peak_memory"] = memory
    logits_mib = args.pairs * args.tokens * QWEN3_0_6B["vocab_size"] * 4 / 2**20
    record["full_vocab_logits_mib"] = round(logits_mib, 1)
    if not args.memory_only:
        record["speed"] = speed(args.layers, args.pairs, args.tokens, args.repeats)
        print(json.dumps(record["speed"]), flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = Path(args.out) / f"bench-token-logits-{time.strftime('%Y%m%dT%H%MZ', time.gmtime())}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(path)


if __name__ == "__main__":
    main()
