"""A worker's Prometheus metrics: forward passes, pairs and tokens, the device's idle time, model load time,
failures by error type, engine restarts.

The engine process keeps what happens on the device (`EngineMetrics`), the Celery process what happens to
tasks (`TaskMetrics`); each lives in a private registry and leaves as a JSON snapshot, and the Celery process
puts both, merged, in its heartbeat record (`metrics` in `rerank:worker:<name>`, shared/registry.py). The
API's `/metrics` re-exposes every live worker's snapshot labelled by worker and model
(api/ranking/fleet_metrics.py), so one scrape target covers a fleet on any number of machines.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # no `*_created` series in the heartbeat snapshot

PAIR_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FAILURES = ("rerank_worker_failures", "Failed tasks and forward passes, by task and error type.")


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

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


class EngineMetrics(_Metrics):
    """What the engine process measures: its forward passes, the device's idle time, its model's load time."""

    def __init__(self) -> None:
        super().__init__()
        registry = self.registry
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
        self.device_idle_seconds = Counter(
            "rerank_worker_device_idle_seconds",
            "Time the engine waited for work with nothing to run: a starved device grows it.",
            registry=registry,
        )
        self.device_busy_ratio = Gauge(
            "rerank_worker_device_busy_ratio",
            "Share of the time since the previous heartbeat that the device spent in forward passes.",
            registry=registry,
        )
        self.failures = Counter(*FAILURES, ["task", "error_type"], registry=registry)
        self._real = 0
        self._padded = 0

    def record_batch(self, lengths: Sequence[int] | np.ndarray, seconds: float) -> None:
        """One forward pass over pairs of these token lengths, padded to the longest."""
        lengths = np.asarray(lengths)
        real, padded = int(lengths.sum()), int(lengths.max()) * len(lengths)
        self.batch_size.observe(len(lengths))
        self.batch_tokens.observe(padded)
        self.forward_seconds.observe(seconds)
        self.pairs.inc(len(lengths))
        self.tokens.inc(real)
        self.padded_tokens.inc(padded)
        self._real += real
        self._padded += padded
        self.padding_efficiency.set(self._real / self._padded)

    def record_forward_failure(self, error_type: str) -> None:
        self.failures.labels("forward", error_type).inc()


class TaskMetrics(_Metrics):
    """What the Celery process counts: failed tasks, the engine processes it had to start again, and the batch-job
    chunks it queued again for want of a slot."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = Counter(*FAILURES, ["task", "error_type"], registry=self.registry)
        self.engine_restarts = Counter(
            "rerank_worker_engine_restarts", "Engine processes started again after one stopped.", registry=self.registry
        )
        self.job_chunk_requeues = Counter(
            "rerank_worker_job_chunk_requeues",
            "Batch-job chunks queued again because every chunk slot and waiting place of the worker was taken.",
            registry=self.registry,
        )
        self._lock = threading.Lock()

    def record_failure(self, task: str, error_type: str) -> None:
        with self._lock:
            self.failures.labels(task, error_type).inc()


def merge_snapshots(*snapshots: list[dict]) -> list[dict]:
    """One snapshot of several processes' families; families of one name (failures) hold all their samples."""
    merged: dict[str, dict] = {}
    for snapshot in snapshots:
        for family in snapshot:
            if family["name"] in merged:
                merged[family["name"]]["samples"] += family["samples"]
            else:
                merged[family["name"]] = {**family, "samples": list(family["samples"])}
    return list(merged.values())
