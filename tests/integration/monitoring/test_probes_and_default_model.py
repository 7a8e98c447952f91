"""A readiness probe answered 503 is counted apart (rerank_readiness_not_ready), not as an error served to a
client; and with several models, the first of /v1/models is the model a request that names none gets."""

from __future__ import annotations

import httpx
import pytest
import tritonclient.grpc

from tests.integration.monitoring.test_metrics import scrape, value
from tests.processes import start_api, start_worker

DEFAULT, OTHER = "zeta-default", "alpha-other"  # the default sorts last: a sorted list would put it second


@pytest.fixture(scope="module")
def two_model_api(log_dir, redis_server, bert_model_dir):
    """Two configured models, a worker for the default one only: ready is 503 (the other has none)."""
    url = redis_server.extra["url"]
    worker = start_worker(log_dir, redis_url=url, model=bert_model_dir, model_id=DEFAULT)
    api = start_api(log_dir, redis_url=url, models=f"{DEFAULT}={bert_model_dir},{OTHER}={bert_model_dir}")
    yield api
    api.stop()
    worker.stop()


def test_a_not_ready_probe_is_not_counted_as_an_error(two_model_api):
    url = two_model_api.extra["url"]
    before = scrape(url)
    for _ in range(5):
        assert httpx.get(url + "/v1/health/ready", timeout=10).status_code == 503
    grpc = tritonclient.grpc.InferenceServerClient(two_model_api.extra["grpc"])
    assert not grpc.is_server_ready()
    after = scrape(url)
    errors = ("rerank_request_errors_total", {"protocol": "http", "error_type": "service_unavailable"})
    assert value(after, errors[0], **errors[1]) == value(before, errors[0], **errors[1])
    assert value(after, "rerank_readiness_not_ready_total", protocol="http") - \
        value(before, "rerank_readiness_not_ready_total", protocol="http") == 5  # fmt: skip
    assert value(after, "rerank_readiness_not_ready_total", protocol="grpc") >= 1
    assert value(after, "rerank_requests_total", protocol="http", route="/v1/health/ready", model="", status="503") >= 5


def test_the_first_of_v1_models_is_the_model_a_request_without_one_gets(two_model_api):
    url = two_model_api.extra["url"]
    listed = [card["id"] for card in httpx.get(url + "/v1/models", timeout=10).json()["data"]]
    assert listed[:2] == [DEFAULT, OTHER], listed  # LangChain's NVIDIARerank takes the first
    cohere = httpx.post(url + "/v1/rerank", json={"query": "q", "documents": ["a", "b"]}, timeout=60)  # no model
    assert cohere.status_code == 200, cohere.text
    cohere_model = httpx.post(url + "/v1/rerank", json={"query": "q", "documents": ["a", "b"], "model": listed[0]},
                              timeout=60)  # fmt: skip
    assert cohere_model.json()["results"] == cohere.json()["results"]
