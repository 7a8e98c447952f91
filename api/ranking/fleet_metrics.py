"""The fleet as `/metrics` shows it, read from Redis at scrape time: queue depth, live workers, worker metrics.

Workers put their Prometheus metric families in their heartbeat records (worker/metrics.py,
shared/registry.py); this module re-exposes every live worker's families with `worker` and `model` labels,
so Prometheus scrapes one target for a fleet on any number of machines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.ranking.worker_registry import WorkerRegistry
from shared.celery_app import batch_queue, interactive_queue
from shared.registry import METRICS_FIELD

log = logging.getLogger(__name__)


@dataclass
class WorkerFamilies:
    """One live worker's metric families, as its last heartbeat reported them."""

    worker: str
    model: str
    families: list[dict]


@dataclass
class FleetSnapshot:
    """What one scrape read from Redis."""

    redis_up: bool
    redis_memory: dict[str, int] = field(default_factory=dict)  # used_memory, maxmemory (0: no limit)
    queue_depth: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (queue, model, kind) -> messages
    live_workers: dict[str, int] = field(default_factory=dict)  # model -> workers
    workers: list[WorkerFamilies] = field(default_factory=list)


class FleetReader:
    """Reads a FleetSnapshot; the configured models' queues are shown even while no worker serves them."""

    def __init__(self, redis: Redis, registry: WorkerRegistry, configured_models: list[str]) -> None:
        self._redis = redis
        self._registry = registry
        self._configured_models = configured_models

    async def read(self) -> FleetSnapshot:
        try:
            models = sorted(set(await self._registry.served_models()) | set(self._configured_models))
            memory = await self._redis.info("memory")
            snapshot = FleetSnapshot(redis_up=True, redis_memory={
                name: int(memory.get(name) or 0) for name in ("used_memory", "maxmemory")})  # fmt: skip
            for model in models:
                for kind, queue in (("interactive", interactive_queue(model)), ("batch", batch_queue(model))):
                    snapshot.queue_depth[(queue, model, kind)] = await self._redis.llen(queue)
                workers = await self._registry.live_workers(model)
                snapshot.live_workers[model] = len(workers)
                for worker in workers:
                    info = await self._registry.worker_info(worker) or {}
                    snapshot.workers.append(WorkerFamilies(worker, model, info.get(METRICS_FIELD) or []))
            return snapshot
        except (RedisError, OSError) as exc:
            log.warning("metrics: Redis unreachable: %s", exc)
            return FleetSnapshot(redis_up=False)


class FleetCollector:
    """A prometheus_client collector over one FleetSnapshot."""

    def __init__(self, snapshot: FleetSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot
        yield GaugeMetricFamily("rerank_redis_up", "1 if the API read the fleet from Redis at this scrape.",
                                value=int(snapshot.redis_up))  # fmt: skip
        for name, help_text in (("used_memory", "Bytes Redis holds (INFO memory used_memory) at this scrape."),
                                ("maxmemory", "Redis's memory limit in bytes (maxmemory); 0: none.")):  # fmt: skip
            if name in snapshot.redis_memory:
                yield GaugeMetricFamily(f"rerank_redis_{name}_bytes", help_text, value=snapshot.redis_memory[name])
        depth = GaugeMetricFamily(
            "rerank_queue_depth", "Messages waiting in a model's queue (interactive requests or batch-job chunks).",
            labels=["queue", "model", "kind"],
        )  # fmt: skip
        for (queue, model, kind), messages in sorted(snapshot.queue_depth.items()):
            depth.add_metric([queue, model, kind], messages)
        yield depth
        live = GaugeMetricFamily("rerank_live_workers", "Workers serving a model (heartbeat younger than the TTL).",
                                 labels=["model"])  # fmt: skip
        for model, workers in sorted(snapshot.live_workers.items()):
            live.add_metric([model], workers)
        yield live
        yield from merge_worker_families(snapshot.workers)


def merge_worker_families(workers: list[WorkerFamilies]) -> Iterator[Metric]:
    """One family per metric name, holding every worker's samples labelled by worker and model."""
    merged: dict[str, Metric] = {}
    for entry in workers:
        for family in entry.families:
            metric = merged.get(family["name"])
            if metric is None:
                metric = merged[family["name"]] = Metric(family["name"], family["help"], family["type"])
            for name, labels, value in family["samples"]:
                metric.add_sample(name, {**labels, "worker": entry.worker, "model": entry.model}, value)
    yield from merged.values()


class _Exposition:
    """This process's registry followed by one scrape's fleet snapshot."""

    def __init__(self, *collectors) -> None:
        self._collectors = collectors

    def collect(self):
        for collector in self._collectors:
            yield from collector.collect()


def exposition(snapshot: FleetSnapshot) -> bytes:
    """Prometheus text: this process's own metrics (requests, errors, process), then the fleet's in `snapshot`."""
    return generate_latest(_Exposition(REGISTRY, FleetCollector(snapshot)))
