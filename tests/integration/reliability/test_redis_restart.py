"""Redis stops and comes back on its port: 503 at once while it is away, then service without restarting anything."""

from __future__ import annotations

import time

import httpx

from shared.schemas import ErrorEnvelope
from tests.processes import restart_redis, start_api, start_redis, start_worker

MODEL_ID = "restart/tiny-bert"
BODY = {"model": MODEL_ID, "query": {"text": "q"}, "passages": [{"text": "a"}, {"text": "b"}]}


def test_api_and_worker_reconnect_after_a_redis_restart(log_dir, bert_model_dir):
    redis_proc = start_redis(log_dir)
    url = redis_proc.extra["url"]
    worker = start_worker(log_dir, redis_url=url, model=bert_model_dir, model_id=MODEL_ID)
    api = start_api(log_dir, redis_url=url, model=bert_model_dir, model_id=MODEL_ID)
    base = api.extra["url"]
    try:
        assert httpx.post(base + "/v1/ranking", json=BODY, timeout=30).status_code == 200
        redis_proc.stop()
        for _ in range(3):
            started = time.monotonic()
            response = httpx.post(base + "/v1/ranking", json=BODY, timeout=30)
            assert response.status_code == 503
            assert time.monotonic() - started < 1.0
            assert "Redis" in ErrorEnvelope.model_validate(response.json()).error.message
        ready = httpx.get(base + "/v1/health/ready", timeout=30)
        assert ready.status_code == 503 and "Redis is unreachable" in ready.json()["error"]["message"]

        redis_proc = restart_redis(redis_proc)  # empty: the worker must announce itself again
        back_at = time.monotonic()
        statuses = []
        while time.monotonic() - back_at < 30:
            response = httpx.post(base + "/v1/ranking", json=BODY, timeout=30)
            statuses.append(response.status_code)
            if response.status_code == 200:
                break
            time.sleep(0.2)
        assert statuses[-1] == 200, statuses
        assert set(statuses) <= {200, 503}
        # several in a row, woken by the re-established result subscription (not the 1 s GET fallback)
        latencies = []
        for _ in range(5):
            started = time.monotonic()
            assert httpx.post(base + "/v1/ranking", json=BODY, timeout=5).status_code == 200
            latencies.append(time.monotonic() - started)
        assert sorted(latencies)[2] < 0.5, latencies
        assert httpx.get(base + "/v1/health/ready", timeout=5).status_code == 200
        assert worker.process.poll() is None and api.process.poll() is None
    finally:
        api.stop()
        worker.stop()
        redis_proc.stop()
