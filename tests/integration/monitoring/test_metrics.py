"""GET /metrics after real traffic: requests by protocol, route, model and status; errors by type; queue
depth; and the worker's batch, token, load-time and failure metrics, re-exposed by the API from Redis."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
import tritonclient.grpc
from prometheus_client.parser import text_string_to_metric_families

from api.ranking.model_names import grpc_model_name
from shared.celery_app import RANK_TASK, create_celery_app, interactive_queue
from shared.settings import Settings
from tests.processes import silent_worker, start_api, worker_report

Samples = dict[tuple[str, frozenset], float]


def scrape(url: str, path: str = "/metrics") -> Samples:
    response = httpx.get(url + path, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def rank(stack, passages: list[str], model: str | None = None) -> httpx.Response:
    body = {"model": model or stack.model_id, "query": {"text": "q"}, "passages": [{"text": p} for p in passages]}
    return httpx.post(stack.url + "/v1/ranking", json=body, timeout=60)


def grpc_infer(stack, model: str, passages: list[str]):
    client = tritonclient.grpc.InferenceServerClient(stack.api.extra["grpc"])
    inputs = [tritonclient.grpc.InferInput(name, [len(passages)], "BYTES") for name in ("query", "passage")]
    inputs[0].set_data_from_numpy(np.array(["q"] * len(passages), dtype=object))
    inputs[1].set_data_from_numpy(np.array(passages, dtype=object))
    return client.infer(model, inputs)


def test_metrics_count_requests_errors_and_worker_batches(bert_stack) -> None:
    model, worker = bert_stack.model_id, bert_stack.worker.extra["name"]
    before = scrape(bert_stack.url)
    for passages in (["a b c", "d"], ["e f", "g h i j"], ["k", "l m"]):
        assert rank(bert_stack, passages).status_code == 200
    assert rank(bert_stack, ["x"], model="no-such-model").status_code == 404
    assert rank(bert_stack, ["long passage " * 400]).status_code == 400  # over the limit, NONE: the worker refuses
    assert grpc_infer(bert_stack, grpc_model_name(model), ["a", "b"]).as_numpy("index").shape == (2, 1)
    try:
        grpc_infer(bert_stack, "no_such_model", ["a"])
    except tritonclient.utils.InferenceServerException as exc:
        assert exc.status() == "StatusCode.NOT_FOUND"
    worker_report(bert_stack.redis_url, worker)  # a heartbeat (with the worker's metrics) after the requests
    after = scrape(bert_stack.url)

    def delta(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"protocol": "http", "route": "/v1/ranking", "model": model, "status": "200"}
    assert delta("rerank_requests_total", **ok) == 3
    assert delta("rerank_request_duration_seconds_count", **ok) == 3
    assert delta("rerank_request_duration_seconds_bucket", **ok, le="+Inf") == 3
    assert 0 < delta("rerank_request_duration_seconds_sum", **ok) < 3 * 60
    assert delta("rerank_requests_total", protocol="http", route="/v1/ranking", model="", status="404") == 1
    assert delta("rerank_requests_total", protocol="http", route="/v1/ranking", model=model, status="400") == 1
    assert delta("rerank_request_errors_total", protocol="http", error_type="not_found_error") == 1
    assert delta("rerank_request_errors_total", protocol="http", error_type="validation_error") == 1
    assert delta("rerank_requests_total", protocol="grpc", route="ModelInfer", model=model, status="OK") == 1
    assert delta("rerank_requests_total", protocol="grpc", route="ModelInfer", model="", status="NOT_FOUND") == 1
    assert delta("rerank_request_errors_total", protocol="grpc", error_type="not_found_error") == 1

    for kind in ("interactive", "batch"):
        labels = {"queue": f"rank.{model}.{kind}", "model": model, "kind": kind}
        assert ("rerank_queue_depth", frozenset(labels.items())) in after
    assert value(after, "rerank_live_workers", model=model) >= 1
    assert value(after, "rerank_redis_up") == 1

    mine = {"worker": worker, "model": model}
    assert delta("rerank_worker_pairs_total", **mine) >= 8  # 3 x 2 over HTTP, 2 over gRPC
    tokens, padded = delta("rerank_worker_tokens_total", **mine), delta("rerank_worker_padded_tokens_total", **mine)
    assert 8 * 3 <= tokens <= padded  # at least [CLS] q [SEP] p [SEP] per pair
    assert 0 < value(after, "rerank_worker_padding_efficiency", **mine) <= 1
    assert delta("rerank_worker_batch_size_count", **mine) >= 1
    assert delta("rerank_worker_batch_size_sum", **mine) == delta("rerank_worker_pairs_total", **mine)
    assert delta("rerank_worker_batch_tokens_sum", **mine) == padded
    assert delta("rerank_worker_forward_seconds_count", **mine) == delta("rerank_worker_batch_size_count", **mine)
    assert 0 < value(after, "rerank_worker_model_load_seconds", **mine) < 120
    assert delta("rerank_worker_failures_total", **mine, task="rerank.rank", error_type="validation_error") == 1
    assert value(after, "process_resident_memory_bytes") > 0  # the API process's own collectors


def test_v1_metrics_is_the_same_exposition(bert_stack) -> None:
    names = [{name for name, _ in scrape(bert_stack.url, path)} for path in ("/metrics", "/v1/metrics")]
    assert names[0] == names[1]
    assert {"rerank_live_workers", "rerank_redis_up", "rerank_worker_pairs_total"} <= names[1]
    text = httpx.get(bert_stack.url + "/metrics", timeout=10).text
    helps = [line for line in text.splitlines() if line.startswith("# HELP")]
    assert helps and not [line for line in helps if ".py" in line or ".md" in line]  # no file a reader cannot see


def test_queue_depth_counts_requests_no_worker_has_taken(log_dir, redis_server) -> None:
    model = "metrics/silent-model"
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model=model, request_timeout=2)
    try:
        with silent_worker(redis_server.extra["url"], model):
            body = {"model": model, "query": {"text": "q"}, "passages": [{"text": "p"}]}
            assert httpx.post(api.extra["url"] + "/v1/ranking", json=body, timeout=30).status_code == 504
            samples = scrape(api.extra["url"])
        labels = {"queue": f"rank.{model}.interactive", "model": model, "kind": "interactive"}
        assert value(samples, "rerank_queue_depth", **labels) == 1
        assert value(samples, "rerank_queue_depth", **{**labels, "queue": f"rank.{model}.batch", "kind": "batch"}) == 0
        assert value(samples, "rerank_live_workers", model=model) == 1
        assert value(samples, "rerank_requests_total", protocol="http", route="/v1/ranking", model=model, status="504") == 1
        assert value(samples, "rerank_request_errors_total", protocol="http", error_type="timeout_error") == 1
    finally:
        api.stop()


def test_a_request_that_expired_in_the_queue_counts_as_a_worker_failure(bert_stack) -> None:
    model, worker = bert_stack.model_id, bert_stack.worker.extra["name"]
    labels = {"worker": worker, "model": model, "task": "rerank.rank", "error_type": "expired"}
    before = value(scrape(bert_stack.url), "rerank_worker_failures_total", **labels)
    celery = create_celery_app(Settings(redis_url=bert_stack.redis_url, model_id=model), result_backend=False)
    payload = {"request_id": "expired-1", "model_id": model, "query": "q", "passages": ["p"], "truncate": "NONE"}
    celery.send_task(RANK_TASK, args=[payload], queue=interactive_queue(model), argsrepr="[expired test]",
                     expires=datetime.now(timezone.utc) - timedelta(seconds=5))  # its client gave up long ago
    samples = _poll_scrape(bert_stack, "rerank_worker_failures_total", labels, above=before)
    assert value(samples, "rerank_worker_failures_total", **labels) == before + 1


def _poll_scrape(stack, name: str, labels: dict, *, above: float, timeout: float = 15) -> Samples:
    """Scrapes until `name{labels}` rises above `above` (the worker reports once per heartbeat)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(stack.url)
        if value(samples, name, **labels) > above or time.monotonic() > deadline:
            return samples
        time.sleep(0.3)
