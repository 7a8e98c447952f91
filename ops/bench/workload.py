"""Workloads and statistics of the rerank benchmark (`ops/bench/rerank.py`), kept free of torch and servers.

A workload is a list of requests, each one query and its passages of random vocabulary words, drawn
from a seeded generator so every variant of a run scores exactly the same pairs.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkloadSpec:
    """Requests of `passages` passages each, of `min_words`..`max_words` words (uniform), 8-word queries."""

    name: str
    passages: int
    min_words: int
    max_words: int
    requests: int  # requests per round of one variant
    clients: int = 8
    query_words: int = 8


WORKLOADS = {
    # the goal workload: 24 passages of 10-250 words, 8 concurrent clients
    "mixed": WorkloadSpec("mixed", passages=24, min_words=10, max_words=250, requests=24),
    # the held-out check: long passages, 100 a request
    "long": WorkloadSpec("long", passages=100, min_words=20, max_words=400, requests=8),
}


@dataclass(frozen=True)
class Request:
    query: str
    passages: tuple[str, ...]


def make_requests(spec: WorkloadSpec, words: list[str], *, count: int, seed: int) -> list[Request]:
    """`count` requests of `spec`, the same for the same seed."""
    rng = random.Random(seed)
    return [
        Request(
            query=" ".join(rng.choices(words, k=spec.query_words)),
            passages=tuple(
                " ".join(rng.choices(words, k=rng.randint(spec.min_words, spec.max_words))) for _ in range(spec.passages)
            ),
        )
        for _ in range(count)
    ]


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile (0 <= q <= 1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds."""
    return {"p50_ms": 1000 * statistics.median(seconds), "p99_ms": 1000 * percentile(seconds, 0.99)}


def token_budget_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Indices of `lengths` sorted by length and cut into batches of at most `budget` padded tokens
    (longest x count); a pair longer than the budget runs alone."""
    batches: list[list[int]] = []
    batch: list[int] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        if batch and lengths[index] * (len(batch) + 1) > budget:
            batches.append(batch)
            batch = []
        batch.append(index)
    if batch:
        batches.append(batch)
    return batches


def padded_tokens(batches: list[list[int]], lengths: list[int]) -> int:
    """Tokens the model computes for `batches` of pair indices, each padded to its longest pair."""
    return sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)


def fixed_size_batches(count: int, size: int) -> list[list[int]]:
    """Indices 0..count-1 in their own order, `size` at a time (sentence-transformers' `batch_size`)."""
    return [list(range(start, min(start + size, count))) for start in range(0, count, size)]


def histogram_delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """What a cumulative histogram counted between two readings, buckets in numeric order."""
    keys = sorted(set(after) | set(before), key=int)
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in keys}
    return {key: value for key, value in delta.items() if value}


def median_of(rounds: list[dict], key: str) -> float | None:
    """The median of `key` over the rounds that have it."""
    values = [r[key] for r in rounds if r.get(key) is not None]
    return statistics.median(values) if values else None
