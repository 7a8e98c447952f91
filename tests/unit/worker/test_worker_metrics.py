"""worker/metrics.py and its way to Prometheus: a worker's snapshot (engine and Celery process merged),
re-exposed by api/ranking/fleet_metrics.py."""

from __future__ import annotations

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.ranking.fleet_metrics import FleetCollector, FleetSnapshot, WorkerFamilies
from worker.metrics import EngineMetrics, TaskMetrics, merge_snapshots

def _samples(collector) -> dict[tuple[str, tuple], float]:
    text = generate_latest(collector).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_each_forward_pass_is_counted() -> None:
    metrics = EngineMetrics()
    metrics.record_batch([10, 6], 0.01)
    metrics.record_batch([100], 0.02)
    samples = _samples(metrics.registry)
    assert samples[("rerank_worker_pairs_total", ())] == 3
    assert samples[("rerank_worker_tokens_total", ())] == 116
    assert samples[("rerank_worker_padded_tokens_total", ())] == 120  # 2 x 10 + 1 x 100
    assert samples[("rerank_worker_padding_efficiency", ())] == pytest.approx(116 / 120)
    assert samples[("rerank_worker_batch_size_count", ())] == 2
    assert samples[("rerank_worker_batch_size_bucket", (("le", "2.0"),))] == 2
    assert samples[("rerank_worker_batch_size_bucket", (("le", "1.0"),))] == 1
    assert samples[("rerank_worker_batch_tokens_bucket", (("le", "64.0"),))] == 1  # the 20-token pass
    assert samples[("rerank_worker_batch_tokens_bucket", (("le", "128.0"),))] == 2
    assert samples[("rerank_worker_forward_seconds_count", ())] == 2


def test_failed_passes_and_failed_tasks_are_counted_in_one_family_by_type() -> None:
    engine, tasks = EngineMetrics(), TaskMetrics()
    engine.record_forward_failure("OutOfMemoryError")
    tasks.record_failure("rerank.rank", "validation_error")
    merged = merge_snapshots(tasks.snapshot(), engine.snapshot())
    assert [f["name"] for f in merged].count("rerank_worker_failures") == 1
    samples = _samples(FleetCollector(FleetSnapshot(redis_up=True, workers=[WorkerFamilies("w@h", "m", merged)])))
    labels = (("error_type", "OutOfMemoryError"), ("model", "m"), ("task", "forward"), ("worker", "w@h"))
    assert samples[("rerank_worker_failures_total", labels)] == 1
    labels = (("error_type", "validation_error"), ("model", "m"), ("task", "rerank.rank"), ("worker", "w@h"))
    assert samples[("rerank_worker_failures_total", labels)] == 1
    assert samples[("rerank_worker_pairs_total", (("model", "m"), ("worker", "w@h")))] == 0


def test_the_api_reexposes_every_workers_snapshot_labelled_by_worker_and_model() -> None:
    first, second = EngineMetrics(), EngineMetrics()
    first.record_batch([5, 7], 0.01)
    second.record_batch([4], 0.02)
    second.model_load_seconds.set(3.5)
    snapshot = FleetSnapshot(
        redis_up=True,
        queue_depth={("rank.m.interactive", "m", "interactive"): 3, ("rank.m.batch", "m", "batch"): 0},
        live_workers={"m": 2},
        workers=[WorkerFamilies("w1@a", "m", first.snapshot()), WorkerFamilies("w2@b", "m", second.snapshot())],
    )
    samples = _samples(FleetCollector(snapshot))
    assert samples[("rerank_worker_pairs_total", (("model", "m"), ("worker", "w1@a")))] == 2
    assert samples[("rerank_worker_pairs_total", (("model", "m"), ("worker", "w2@b")))] == 1
    assert samples[("rerank_worker_model_load_seconds", (("model", "m"), ("worker", "w2@b")))] == 3.5
    bucket = ("rerank_worker_batch_tokens_bucket", (("le", "64.0"), ("model", "m"), ("worker", "w1@a")))
    assert samples[bucket] == 1
    assert samples[("rerank_queue_depth", (("kind", "interactive"), ("model", "m"), ("queue", "rank.m.interactive")))] == 3
    assert samples[("rerank_live_workers", (("model", "m"),))] == 2
    assert samples[("rerank_redis_up", ())] == 1
    assert not any(name.endswith("_created") for name, _ in samples)


def test_without_redis_the_scrape_says_so() -> None:
    samples = _samples(FleetCollector(FleetSnapshot(redis_up=False)))
    assert samples[("rerank_redis_up", ())] == 0
