"""How many threads a CPU engine's forward passes take when RERANK_TORCH_THREADS does not say.

torch's default, every core, suits a model whose forward pass is most of the work per pair (MiniLM and up).
With a model that scores a pair in next to no time, the worker's Celery process (decoding tasks, tokenizing,
frames) and the API need a core as much as the forward pass does, and a second OpenMP thread that spins
between parallel regions takes it from them. So after warm-up the engine times a probe pass and, when a
token's forward pass costs less than RESERVE_BELOW times what the request path costs per token, leaves one
core out. On the 2-core machine of 2026-12-01 (ops/BENCHMARKS.md, "The fleet's own cost"): the near-free
model's fleet reached 0.93 of an in-process loop on two threads and 1.15 on one, while MiniLM served 14.6
pairs/s on one thread against 25.3 on two. The two differ about a hundredfold in forward cost per token, so
the threshold sits between them; models between the two were not measured.
"""

from __future__ import annotations

import logging
import time

import torch

log = logging.getLogger("worker.engine")

PATH_CPU_US_PER_TOKEN = 5.0  # the worker's Celery process: 93-118 µs of CPU per pair of about 25 tokens
RESERVE_BELOW = 10.0  # leave a core out when a token's forward pass costs less than this many times that
CHEAP_BELOW_US = RESERVE_BELOW * PATH_CPU_US_PER_TOKEN  # forward CPU per token under which a pass counts as cheap
PROBE_PAIRS, PROBE_WORDS, PROBE_PASSES = 16, 48, 5
FAR_OVER = 4.0  # one probe pass this many times over the threshold settles it: start-up pays no more passes


def threads_for(forward_cpu_us_per_token: float, threads: int) -> int:
    """`threads` less one when the forward pass is that cheap and there is a core to spare, else `threads`."""
    if threads > 1 and forward_cpu_us_per_token < CHEAP_BELOW_US:
        return threads - 1
    return threads


def forward_cpu_us_per_token(encoder) -> float:
    """CPU time a token takes in a forward pass: the best of up to PROBE_PASSES probe passes, wall time x
    threads (the first pass of the shape, which builds its kernels, not counted). Noise only slows a pass, so
    the probe stops at the first pass under the threshold, or one FAR_OVER times over it."""
    pairs = encoder.encode("how cheap is a forward pass", [" ".join(["word"] * PROBE_WORDS)] * PROBE_PAIRS, "END")
    encoder.score(pairs)
    best = float("inf")
    for _ in range(PROBE_PASSES):
        started = time.perf_counter()
        encoder.score(pairs)
        cost = 1e6 * (time.perf_counter() - started) * torch.get_num_threads() / int(pairs.lengths.sum())
        best = min(best, cost)
        if cost < CHEAP_BELOW_US or cost > FAR_OVER * CHEAP_BELOW_US:
            break
    return best


def fit_cpu_threads(encoder) -> None:
    """On the thread that runs the passes, after warm-up: leave a core to the request path for a cheap model."""
    threads = torch.get_num_threads()
    cost = forward_cpu_us_per_token(encoder)
    chosen = threads_for(cost, threads)
    if chosen != threads:
        torch.set_num_threads(chosen)
        encoder.warmup()  # the new OpenMP team
    log.info("forward pass %.1f µs of CPU per token on %d threads: the engine takes %d (RERANK_TORCH_THREADS "
             "unset)", cost, threads, chosen)  # fmt: skip
