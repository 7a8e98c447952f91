"""How many threads a CPU engine's forward passes take when RERANK_TORCH_THREADS does not say.

torch's default, every core, suits a model whose forward pass is most of the work per pair (MiniLM and up).
With a model that scores a pair in next to no time, the worker's Celery process (decoding tasks, tokenizing,
frames) and the API need a core as much as the forward pass does, and a second OpenMP thread that spins
between parallel regions takes it from them. So the engine leaves one core out when a token's forward pass
costs less than the request path's work per token; the cost is read off the model's shapes (2 multiply-adds
per weight of its linear layers, what a token's pass through them costs), never timed, so the same model gets
the same threads on an idle machine and a loaded one.

On the 2-core machine of 2026-12-01 (ops/BENCHMARKS.md, "The fleet's own cost"): the near-free model (one
BERT layer of hidden size 32: 18 k FLOPs per token) reached 0.93 of an in-process loop on two threads and
1.15 on one, while MiniLM-L6 (21 M FLOPs per token) served 14.6 pairs/s on one thread against 25.3 on two.
The request path costs about 5 µs of CPU per token (93-118 µs per pair of about 25 tokens), what a core
doing 2-10 GFLOP/s spends on 10-50 k FLOPs; CHEAP_BELOW_FLOPS, 1 M, sits between the two models measured
(a factor 1,000 apart), 20-100 times that path cost (the timed probe it replaces drew the line at 10 times).
Models between the two (a 2-layer TinyBERT of hidden size 128: 0.8 M, leaves a core) were not measured;
RERANK_TORCH_THREADS overrides the rule.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger("worker.engine")

CHEAP_BELOW_FLOPS = 1_000_000  # forward FLOPs per token under which a model leaves a core to the request path


def forward_flops_per_token(model: torch.nn.Module) -> int:
    """FLOPs a token takes through the model's linear layers: 2 per weight (attention's own cost, which
    grows with the pair's length, is left out: it only adds to a model that is already costly)."""
    return 2 * sum(module.weight.numel() for module in model.modules() if isinstance(module, torch.nn.Linear))


def threads_for(flops_per_token: int, threads: int) -> int:
    """`threads` less one when the forward pass is that cheap and there is a core to spare, else `threads`."""
    if threads > 1 and flops_per_token < CHEAP_BELOW_FLOPS:
        return threads - 1
    return threads


def fit_cpu_threads(encoder) -> None:
    """On the thread that runs the passes, after warm-up: leave a core to the request path for a cheap model."""
    threads = torch.get_num_threads()
    flops = forward_flops_per_token(encoder.model)
    chosen = threads_for(flops, threads)
    if chosen != threads:
        torch.set_num_threads(chosen)
        encoder.warmup()  # the new OpenMP team
    log.info("forward pass %.2f MFLOPs per token (from the model's shapes) with %d cores: the engine takes %d "
             "threads (RERANK_TORCH_THREADS unset)", flops / 1e6, threads, chosen)  # fmt: skip
