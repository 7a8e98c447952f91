"""The worker's forward pass on a CPU, piece by piece: linear kernels, packed tokens, the model thread.

1. `F.linear` (torch's kernel: MKL's sgemm on x86) against oneDNN's linear on BERT-base-like shapes of
   MiniLM (hidden 384, intermediate 1536) for 40 to 4096 rows, and oneDNN's rate in bfloat16.
2. One forward pass of the worker's runtime over the same pairs in each layout (`RERANK_PACKED_FORWARD`): packed
   tokens and padded rows through its own forward against transformers' padded forward, for four kinds of batch.
3. A one-pair pass on the thread that ran the model's first pass against the same pass on another thread
   (each thread that runs torch's parallel work gets its own OpenMP team).
4. Where one packed pass spends its time, by torch's profiler.
5. The same pairs in bfloat16 (RERANK_DTYPE=bfloat16) against float32: time, and how far the logits move
   next to their spread.

Usage: python -m ops.bench.forward --model-dir DIR [--threads 2] [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F

from shared.settings import Settings
from worker.model.packed_forward import onednn_linear
from worker.model.runtime import FORWARD_LAYOUTS, CrossEncoder

WORDS = "the of and to in is was for on that with as by at from his her an which or be city river".split()
QUERY = "what is the capital of france"
BATCHES = {"16 pairs of 100-140 words": (16, 100, 140), "12 pairs of 10-250 words": (12, 10, 250),
           "4 pairs of 380-420 words": (4, 380, 420), "64 pairs of 10-30 words": (64, 10, 30)}  # fmt: skip


def seconds_per_call(call, budget: float) -> float:
    call()
    call()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < budget:
        call()
        calls += 1
    return (time.perf_counter() - started) / calls


def linear_kernels(budget: float) -> list[dict]:
    rows = []
    with torch.inference_mode():
        for tokens in (40, 300, 2048, 4096):
            for fan_in, fan_out in ((384, 1152), (384, 1536), (1536, 384)):
                x, weight, bias = torch.randn(tokens, fan_in), torch.randn(fan_out, fan_in), torch.randn(fan_out)
                torch_s = seconds_per_call(lambda: F.linear(x, weight, bias), budget / 4)
                onednn_s = seconds_per_call(lambda: onednn_linear(x, weight, bias, False), budget / 4)
                half = [tensor.bfloat16() for tensor in (x, weight, bias)]
                bf16_s = seconds_per_call(lambda: onednn_linear(*half, False), budget / 4)
                flops = 2 * tokens * fan_in * fan_out
                rows.append({"shape": f"{tokens}x{fan_in} by {fan_in}x{fan_out}", "torch_ms": round(1000 * torch_s, 3),
                             "onednn_ms": round(1000 * onednn_s, 3), "speedup": round(torch_s / onednn_s, 2),
                             "onednn_gflops": round(flops / onednn_s / 1e9),
                             "onednn_bfloat16_gflops": round(flops / bf16_s / 1e9)})  # fmt: skip
    return rows


def layouts_against_transformers(encoder: CrossEncoder, budget: float) -> list[dict]:
    """Each batch in the three forward layouts (worker/model/runtime.py, FORWARD_LAYOUTS), one after another."""
    rng = np.random.default_rng(0)
    rows, chosen = [], encoder.layout
    for name, (count, low, high) in BATCHES.items():
        passages = [" ".join(rng.choice(WORDS, int(rng.integers(low, high)))) for _ in range(count)]
        pairs = encoder.encode(QUERY, passages, "END")
        timed = {}
        for layout in FORWARD_LAYOUTS:
            encoder.layout = layout
            timed[layout] = seconds_per_call(lambda: encoder.score(pairs), budget), encoder.score(pairs)
        encoder.layout = chosen
        padded_s, padded_logits = timed["transformers"]
        rows.append({"batch": name, "real_token_fraction": round(int(pairs.lengths.sum()) / (int(pairs.lengths.max()) * count), 2),
                     **{f"{layout.replace(' ', '_')}_ms": round(1000 * timed[layout][0], 1) for layout in FORWARD_LAYOUTS},
                     "packed_speedup": round(padded_s / timed["packed"][0], 2),
                     "padded_rows_speedup": round(padded_s / timed["padded rows"][0], 2),
                     "max_logit_difference": float(max(abs(a - b) for layout in FORWARD_LAYOUTS[:2]
                                                       for a, b in zip(timed[layout][1], padded_logits)))})  # fmt: skip
    return rows


def model_thread(encoder: CrossEncoder) -> dict:
    pairs = encoder.encode(QUERY, ["paris is the capital and most populous city of france"], "END")
    result: dict[str, float] = {}

    def one_pair_ms(label: str) -> None:
        encoder.score(pairs)
        for pause in (0.0, 0.05):
            spans = []
            for _ in range(40):
                time.sleep(pause)
                began = time.perf_counter()
                encoder.score(pairs)
                spans.append(time.perf_counter() - began)
            result[f"{label}, {int(pause * 1000)} ms idle before"] = round(1000 * statistics.median(spans), 2)

    one_pair_ms("thread of the first pass")  # the main thread: CrossEncoder.load ran nothing, the probes did
    other = threading.Thread(target=one_pair_ms, args=("another thread",))
    other.start()
    other.join()
    return result


def profile_of_one_pass(encoder: CrossEncoder, top: int = 8) -> list[dict]:
    """Where one packed pass of 16 pairs of 100-140 words spends its time (torch's profiler, 10 passes)."""
    from torch.profiler import ProfilerActivity, profile

    rng = np.random.default_rng(1)
    pairs = encoder.encode(QUERY, [" ".join(rng.choice(WORDS, int(rng.integers(100, 140)))) for _ in range(16)], "END")
    for _ in range(3):
        encoder.score(pairs)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            encoder.score(pairs)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "self_cpu_fraction": round(e.self_cpu_time_total / total, 3)} for e in events[:top]]


def bfloat16_against_float32(model_dir: str, encoder: CrossEncoder, budget: float) -> list[dict]:
    half = CrossEncoder.load(Settings(model=model_dir, device="cpu", dtype="bfloat16"))
    rng = np.random.default_rng(2)
    rows = []
    for name, (count, low, high) in BATCHES.items():
        passages = [" ".join(rng.choice(WORDS, int(rng.integers(low, high)))) for _ in range(count)]
        pairs = encoder.encode(QUERY, passages, "END")
        full_s, half_s = (seconds_per_call(lambda: side.score(pairs), budget) for side in (encoder, half))
        full, low_precision = np.array(encoder.score(pairs)), np.array(half.score(pairs))
        rows.append({"batch": name, "float32_ms": round(1000 * full_s, 1), "bfloat16_ms": round(1000 * half_s, 1),
                     "speedup": round(full_s / half_s, 2),
                     "max_logit_difference": float(np.abs(low_precision - full).max()),
                     "float32_logit_std": float(full.std())})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    encoder = CrossEncoder.load(Settings(model=args.model_dir, device="cpu"))
    if encoder.own_forward is None:
        raise SystemExit("this model has no own forward (BERT, RoBERTa and XLM-R only)")
    result = {"threads": args.threads, "model_thread_one_pair_ms": model_thread(encoder),
              "layouts_against_transformers": layouts_against_transformers(encoder, args.seconds),
              "linear_kernels": linear_kernels(args.seconds), "own_forward_linear": encoder.own_forward.linear.__name__,
              "profile_of_one_pass": profile_of_one_pass(encoder),
              "bfloat16_against_float32": bfloat16_against_float32(args.model_dir, encoder, args.seconds)}  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
