"""Why a GPU worker's small model waits: one forward pass beside threads busy in Python (ops/BENCHMARKS.md, "GPU").

A worker's model thread shares the interpreter with the request threads (task decoding, building pairs).
Every torch call releases the GIL; a busy thread may then keep it for up to the switch interval. This
times the worker's own `CrossEncoder.score` on 512 pairs of 128 tokens: alone, its parts (padding, the
forward pass), and beside four threads busy in Python at several switch intervals.

Usage: python -m ops.bench.gil --model-dir DIR [--pairs 512]   (a CUDA device; DIR: a cross-encoder)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

import torch

from shared.settings import Settings
from worker.model.runtime import CrossEncoder, pad_batch

INTERVALS_SECONDS = (0.005, 0.001, 0.0002, 0.0001, 0.00005)


def median_ms(fn, repeats: int = 10) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--pairs", type=int, default=512)
    args = parser.parse_args()
    encoder = CrossEncoder.load(Settings(model=args.model_dir, model_id="gil", device="cuda", max_seq_len=128))
    began = time.perf_counter()
    pairs = encoder.encode("what is it", [" ".join(["word"] * 130)] * args.pairs, "END")
    print(f"encode {args.pairs} pairs: {1000 * (time.perf_counter() - began):.1f} ms")
    print(f"score alone: {median_ms(lambda: encoder.score(pairs)):.2f} ms "
          f"(pad_batch {median_ms(lambda: pad_batch(pairs, encoder.pad_token_id)):.2f} ms)")  # fmt: skip
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            sum(range(1000))

    threads = [threading.Thread(target=busy, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    default = sys.getswitchinterval()
    try:
        for interval in INTERVALS_SECONDS:
            sys.setswitchinterval(interval)
            print(f"score beside 4 busy Python threads, switch interval {interval * 1000:g} ms: "
                  f"{median_ms(lambda: encoder.score(pairs), 5):.2f} ms")  # fmt: skip
    finally:
        sys.setswitchinterval(default)
        stop.set()


if __name__ == "__main__":
    main()
