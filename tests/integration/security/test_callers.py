"""Callers and hosts: with several API keys each caller sees only its own batch jobs and idempotency keys;
RERANK_TRUSTED_HOSTS refuses other Host names."""

from __future__ import annotations

import json

import httpx
import pytest

from shared.schemas import ErrorEnvelope
from tests.processes import silent_worker, start_api

MODEL_ID = "callers/silent"
KEY_A, KEY_B = "caller-a-key", "caller-b-key"


@pytest.fixture(scope="module")
def two_key_api(log_dir, redis_server):
    with silent_worker(redis_server.extra["url"], MODEL_ID):
        api = start_api(log_dir, redis_url=redis_server.extra["url"], model="unused", model_id=MODEL_ID,
                        api_key=f"{KEY_A},{KEY_B}", trusted_hosts="127.0.0.1,*.example.test")  # fmt: skip
        yield api
        api.stop()


def _as(key: str, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **headers}


def test_each_key_sees_only_its_own_jobs(two_key_api):
    url = two_key_api.extra["url"] + "/v1/ranking/jobs"
    body = json.dumps({"model": MODEL_ID, "requests": [{"query": {"text": "q"}, "passages": [{"text": "p"}]}]})
    headers = {"content-type": "application/json", "idempotency-key": "corpus-1"}
    mine = httpx.post(url, content=body, headers=_as(KEY_A, **headers), timeout=30)
    assert mine.status_code == 202, mine.text
    job_id = mine.json()["id"]
    assert httpx.get(f"{url}/{job_id}", headers=_as(KEY_A), timeout=30).status_code == 200
    for other in (httpx.get(f"{url}/{job_id}", headers=_as(KEY_B), timeout=30),
                  httpx.delete(f"{url}/{job_id}", headers=_as(KEY_B), timeout=30),
                  httpx.get(f"{url}/{job_id}/results", headers=_as(KEY_B), timeout=30)):  # fmt: skip
        assert other.status_code == 404, other.text
    assert job_id in [job["id"] for job in httpx.get(url, headers=_as(KEY_A), timeout=30).json()["data"]]
    assert job_id not in [job["id"] for job in httpx.get(url, headers=_as(KEY_B), timeout=30).json()["data"]]
    theirs = httpx.post(url, content=body, headers=_as(KEY_B, **headers), timeout=30)  # the same Idempotency-Key
    assert theirs.status_code == 202 and theirs.json()["id"] != job_id
    again = httpx.post(url, content=body, headers=_as(KEY_A, **headers), timeout=30)
    assert again.status_code == 200 and again.json()["id"] == job_id
    assert httpx.get(url, headers=_as("neither"), timeout=30).status_code == 401


def test_a_host_outside_the_trusted_list_is_refused(two_key_api):
    url = two_key_api.extra["url"] + "/v1/health/live"
    refused = httpx.get(url, headers={"host": "evil.example.com"}, timeout=10)
    assert refused.status_code == 400
    assert "RERANK_TRUSTED_HOSTS" in ErrorEnvelope.model_validate(refused.json()).error.message
    assert httpx.get(url, headers={"host": "api.example.test:8000"}, timeout=10).status_code == 200
    assert httpx.get(url, timeout=10).status_code == 200  # 127.0.0.1:<port>
