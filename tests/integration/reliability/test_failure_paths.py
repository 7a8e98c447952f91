"""What a client sees when part of the fleet is missing: no worker, a silent worker, no Redis, no key."""

from __future__ import annotations

import json
import time

import httpx
import redis

from shared.schemas import ErrorEnvelope
from tests.processes import silent_worker, start_api, start_redis

BODY = {"query": {"text": "q"}, "passages": [{"text": "p"}]}


def test_no_worker_for_the_model_is_503_with_retry_after(log_dir, redis_server):
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model="ghost/model")
    try:
        response = httpx.post(api.extra["url"] + "/v1/ranking", json={"model": "ghost/model", **BODY})
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) > 0
        assert "ghost/model" in ErrorEnvelope.model_validate(response.json()).error.message
        ready = httpx.get(api.extra["url"] + "/v1/health/ready")
        assert ready.status_code == 503 and "no worker" in ready.json()["error"]["message"]
    finally:
        api.stop()


def test_a_worker_that_never_answers_is_504_after_the_timeout(log_dir, redis_server):
    """A registered worker that consumes nothing: the request times out instead of hanging."""
    model_id = "silent/model"
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model=model_id, request_timeout=1.5)
    try:
        with silent_worker(redis_server.extra["url"], model_id):
            started = time.monotonic()
            response = httpx.post(api.extra["url"] + "/v1/ranking", json={"model": model_id, **BODY}, timeout=30)
            elapsed = time.monotonic() - started
            assert response.status_code == 504
            assert ErrorEnvelope.model_validate(response.json()).error.type == "timeout_error"
            assert 1.4 < elapsed < 5
    finally:
        api.stop()


def test_redis_down_is_503_within_a_second_or_two(log_dir, bert_model_dir):
    private_redis = start_redis(log_dir)
    api = start_api(log_dir, redis_url=private_redis.extra["url"], model=bert_model_dir, model_id="m")
    try:
        private_redis.stop()
        started = time.monotonic()
        response = httpx.post(api.extra["url"] + "/v1/ranking", json={"model": "m", **BODY}, timeout=30)
        assert response.status_code == 503
        assert "Redis" in response.json()["error"]["message"]
        assert "retry-after" in response.headers
        assert time.monotonic() - started < 3
        ready = httpx.get(api.extra["url"] + "/v1/health/ready", timeout=30)
        assert ready.status_code == 503 and "Redis" in ready.json()["error"]["message"]
    finally:
        api.stop()


def test_api_key_is_required_on_ranking_routes_but_not_health(log_dir, redis_server, bert_stack):
    api = start_api(
        log_dir, redis_url=redis_server.extra["url"], model="unused", model_id=bert_stack.model_id, api_key="s3cret"
    )
    url = api.extra["url"]
    body = {"model": bert_stack.model_id, **BODY}
    try:
        missing = httpx.post(url + "/v1/ranking", json=body)
        assert missing.status_code == 401
        assert ErrorEnvelope.model_validate(missing.json()).error.type == "authentication_error"
        wrong = httpx.post(url + "/v1/ranking", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert httpx.get(url + "/v1/models").status_code == 401
        assert httpx.get(url + "/metrics").status_code == 401
        assert "rerank_requests_total" in httpx.get(url + "/metrics", headers={"Authorization": "Bearer s3cret"}).text
        good = httpx.post(url + "/v1/ranking", json=body, headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200, good.text
        assert httpx.get(url + "/v1/health/live").status_code == 200
        assert httpx.get(url + "/v1/health/ready").status_code == 200
        assert "s3cret" not in api.log()
    finally:
        api.stop()


def test_without_a_key_any_authorization_header_is_ignored(bert_stack):
    response = httpx.post(
        bert_stack.url + "/v1/ranking",
        json={"model": bert_stack.model_id, **BODY},
        headers={"Authorization": "Bearer **********"},
    )
    assert response.status_code == 200


def test_task_messages_show_counts_never_the_texts(log_dir, redis_server):
    """What Flower and worker logs display of a queued request: model and counts, not the query or passages."""
    model_id = "private/model"
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model=model_id, request_timeout=1)
    try:
        with silent_worker(redis_server.extra["url"], model_id):
            body = {"model": model_id, "query": {"text": "secret question"},
                    "passages": [{"text": "confidential passage"}, {"text": "another secret"}]}  # fmt: skip
            assert httpx.post(api.extra["url"] + "/v1/ranking", json=body, timeout=30).status_code == 504
        queued = redis.Redis.from_url(redis_server.extra["url"]).lrange(f"rank.{model_id}.interactive", 0, -1)
        headers = json.loads(queued[-1])["headers"]
        assert headers["argsrepr"] == "[model='private/model' passages=2 truncate=NONE]"
        assert "secret" not in headers["argsrepr"] + headers["kwargsrepr"]
    finally:
        api.stop()
