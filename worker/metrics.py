"""A worker's Prometheus metrics: forward passes, pairs and tokens, model load time, failures by error type.

They live in a private registry and leave the process as a JSON snapshot in the worker's heartbeat record
(`metrics` in `rerank:worker:<name>`, shared/registry.py); the API's `/metrics` re-exposes every live
worker's snapshot labelled by worker and model (api/ranking/fleet_metrics.py), so one scrape target covers a fleet
on any number of machines. The micro-batcher is observed from outside: `observe_score` wraps the score
function it calls once per forward pass.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # no `*_created` series in the heartbeat snapshot

PAIR_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

ScoreFn = Callable[[Sequence[Any]], Sequence[float]]  # the micro-batcher's: pairs with a `length` in, logits out


class WorkerMetrics:
    """The metrics of one worker process and the snapshot it sends with its heartbeat."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.batch_size = Histogram(
            "rerank_worker_batch_size", "Pairs per forward pass.", buckets=PAIR_BUCKETS, registry=registry
        )
        self.batch_tokens = Histogram(
            "rerank_worker_batch_tokens",
            "Padded tokens per forward pass (longest pair x pairs).",
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.forward_seconds = Histogram(
            "rerank_worker_forward_seconds", "Duration of one forward pass.", buckets=SECONDS_BUCKETS, registry=registry
        )
        self.pairs = Counter("rerank_worker_pairs", "(query, passage) pairs scored.", registry=registry)
        self.tokens = Counter("rerank_worker_tokens", "Real tokens scored (pair lengths, no padding).", registry=registry)
        self.padded_tokens = Counter(
            "rerank_worker_padded_tokens", "Tokens fed to the model, padding included.", registry=registry
        )
        self.padding_efficiency = Gauge(
            "rerank_worker_padding_efficiency",
            "Real tokens / padded tokens over the worker's life (1 is no padding).",
            registry=registry,
        )
        self.model_load_seconds = Gauge(
            "rerank_worker_model_load_seconds", "Time the worker took to load and warm up its model.", registry=registry
        )
        self.failures = Counter(
            "rerank_worker_failures",
            "Failed tasks and forward passes, by task and error type.",
            ["task", "error_type"],
            registry=registry,
        )
        self._lock = threading.Lock()
        self._real = 0
        self._padded = 0

    def observe_score(self, score: ScoreFn) -> ScoreFn:
        """`score` (one forward pass over a batch), counted: size, tokens, duration, failures."""

        def observed(pairs: Sequence[Any]) -> Sequence[float]:
            started = time.perf_counter()
            try:
                scores = score(pairs)
            except Exception as exc:
                self.failures.labels("forward", type(exc).__name__).inc()
                raise
            self.record_batch([pair.length for pair in pairs], time.perf_counter() - started)
            return scores

        return observed

    def record_batch(self, lengths: Sequence[int], seconds: float) -> None:
        """One forward pass over pairs of these token lengths, padded to the longest."""
        real, padded = sum(lengths), max(lengths) * len(lengths)
        self.batch_size.observe(len(lengths))
        self.batch_tokens.observe(padded)
        self.forward_seconds.observe(seconds)
        self.pairs.inc(len(lengths))
        self.tokens.inc(real)
        self.padded_tokens.inc(padded)
        with self._lock:
            self._real += real
            self._padded += padded
            self.padding_efficiency.set(self._real / self._padded)

    def record_failure(self, task: str, error_type: str) -> None:
        self.failures.labels(task, error_type).inc()

    def snapshot(self) -> list[dict]:
        """Every family with its samples, as JSON-ready dicts (`_created` samples left out)."""
        return [
            {
                "name": family.name,
                "type": family.type,
                "help": family.documentation,
                "samples": [[s.name, s.labels, s.value] for s in family.samples if not s.name.endswith("_created")],
            }
            for family in self.registry.collect()
        ]
