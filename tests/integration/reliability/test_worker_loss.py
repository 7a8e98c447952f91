"""A worker SIGKILLed while it scores a request: the request goes to another worker, or fails fast with 503."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time

import httpx
import pytest
import redis

from shared.schemas import ErrorEnvelope
from tests.processes import start_api, start_redis, start_worker

MODEL_ID = "kill/tiny-bert"
# heavy enough to be caught mid-way: one pair per forward pass (RERANK_MAX_BATCH_TOKENS=64)
BODY = {
    "model": MODEL_ID,
    "query": {"text": "what is the capital of france"},
    "passages": [{"text": f"passage {i} " + "paris is a city in france " * 60} for i in range(512)],
    "truncate": "END",
}
WORKER_SETTINGS = {"max_batch_tokens": 64, "torch_threads": 1}


@pytest.fixture
def private_redis(log_dir):
    proc = start_redis(log_dir)
    yield proc
    proc.stop()


def _kill_the_scoring_worker(redis_url: str, workers: list, timeout: float = 20) -> str:
    """SIGKILL whichever worker records that it took the request; return its name."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for key in client.scan_iter(match="rerank:task:*:worker"):
            owner = (client.get(key) or b"").decode()
            for worker in workers:
                if worker.extra["name"] == owner:
                    os.kill(worker.process.pid, signal.SIGKILL)
                    worker.process.wait()
                    return owner
        time.sleep(0.005)
    raise AssertionError("no worker took the request")


def _assert_a_quick_503(response: httpx.Response, says: str, *, since: float) -> None:
    """A 503 envelope saying `says`, with Retry-After, within 10 s of `since` (the deadline is 60 s)."""
    assert response.status_code == 503, response.text
    assert says in ErrorEnvelope.model_validate(response.json()).error.message
    assert "retry-after" in response.headers
    assert time.monotonic() - since < 10


def test_the_request_of_a_killed_worker_is_sent_to_another(log_dir, private_redis, bert_model_dir):
    url = private_redis.extra["url"]
    workers = [start_worker(log_dir, redis_url=url, model=bert_model_dir, model_id=MODEL_ID, **WORKER_SETTINGS)
               for _ in range(2)]  # fmt: skip
    api = start_api(log_dir, redis_url=url, model=bert_model_dir, model_id=MODEL_ID, request_timeout=60)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            answer = pool.submit(httpx.post, api.extra["url"] + "/v1/ranking", json=BODY, timeout=90)
            killed = _kill_the_scoring_worker(url, workers)
            response = answer.result()
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert sorted(r["index"] for r in response.json()["rankings"]) == list(range(512))
        assert elapsed < 30, f"took {elapsed:.1f}s"
        assert f"worker {killed} died scoring task" in api.log()
    finally:
        api.stop()
        for worker in workers:
            worker.stop()


def test_with_no_other_worker_the_request_fails_fast_with_503(log_dir, private_redis, bert_model_dir):
    url = private_redis.extra["url"]
    worker = start_worker(log_dir, redis_url=url, model=bert_model_dir, model_id=MODEL_ID, **WORKER_SETTINGS)
    api = start_api(log_dir, redis_url=url, model=bert_model_dir, model_id=MODEL_ID, request_timeout=60)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(httpx.post, api.extra["url"] + "/v1/ranking", json=BODY, timeout=90)
            _kill_the_scoring_worker(url, [worker])
            killed_at = time.monotonic()
            response = answer.result()
        # noticed once the worker's heartbeat is older than its TTL (3 x 0.5 s here), far before the 60 s timeout
        _assert_a_quick_503(response, "stopped before answering", since=killed_at)
    finally:
        api.stop()
        worker.stop()


def test_a_request_popped_by_a_worker_that_died_before_claiming_it_is_sent_again(log_dir, private_redis, bert_model_dir):
    """The message of a request that a worker took off the queue and lost (killed before it recorded the
    request as its own) is sent again while live workers remain: 200 before the deadline, not a 504 at it."""
    from shared.celery_app import interactive_queue
    from tests.processes import silent_worker

    url = private_redis.extra["url"]
    api = start_api(log_dir, redis_url=url, model=bert_model_dir, model_id=MODEL_ID, request_timeout=30)
    client = redis.Redis.from_url(url)
    body = {**BODY, "passages": BODY["passages"][:2]}
    try:
        with silent_worker(url, MODEL_ID), concurrent.futures.ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            answer = pool.submit(httpx.post, api.extra["url"] + "/v1/ranking", json=body, timeout=60)
            assert client.brpop([interactive_queue(MODEL_ID)], timeout=10) is not None  # popped, then "killed"
            worker = start_worker(log_dir, redis_url=url, model=bert_model_dir, model_id=MODEL_ID, **WORKER_SETTINGS)
            response = answer.result()
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 30
        assert "sending it again" in api.log()
        worker.stop()
    finally:
        api.stop()


def test_a_request_still_queued_when_the_last_worker_leaves_is_a_503_at_once(log_dir, private_redis):
    """Queued, never taken, and then no worker is left for the model: 503 with Retry-After within seconds,
    not a 504 at the deadline."""
    from tests.processes import silent_worker

    url = private_redis.extra["url"]
    api = start_api(log_dir, redis_url=url, model="unused", model_id=MODEL_ID, request_timeout=60)
    body = {**BODY, "passages": BODY["passages"][:2]}
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            with silent_worker(url, MODEL_ID):  # registered, consumes nothing: the task stays queued
                answer = pool.submit(httpx.post, api.extra["url"] + "/v1/ranking", json=body, timeout=90)
                time.sleep(1)
                assert not answer.done()
            left_at = time.monotonic()  # the registration is gone
            response = answer.result()
        _assert_a_quick_503(response, "no worker is serving model", since=left_at)
    finally:
        api.stop()
