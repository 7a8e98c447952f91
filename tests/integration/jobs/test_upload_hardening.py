"""Batch-job uploads as an attacker or a careless client sends them: memory stays bounded while a large JSON
or NDJSON job is read, a line with no end is refused early, only JSON and NDJSON are taken, and one caller
cannot fill Redis with jobs."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from shared.schemas import ErrorEnvelope
from tests.processes import silent_worker, start_api, start_redis

MODEL_ID = "uploads/silent"  # announced by a worker that consumes nothing: jobs stay queued
UPLOAD_MIB = 32


@pytest.fixture(scope="module")
def upload_redis(log_dir):
    proc = start_redis(log_dir)
    with silent_worker(proc.extra["url"], MODEL_ID):
        yield proc
    proc.stop()


@pytest.fixture(scope="module")
def upload_api(log_dir, upload_redis):
    api = start_api(log_dir, redis_url=upload_redis.extra["url"], model="unused", model_id=MODEL_ID,
                    job_max_upload_bytes=64 * 1024 * 1024)  # fmt: skip
    yield api
    api.stop()


def _request(i: int) -> dict:
    return {"custom_id": f"r{i}", "query": {"text": f"query number {i}"},
            "passages": [{"text": f"passage {j} of request {i} " + "word " * 40} for j in range(5)]}  # fmt: skip


def _json_upload(mib: int) -> bytes:
    count = mib * 1024 * 1024 // len(json.dumps(_request(0)))
    return json.dumps({"model": MODEL_ID, "truncate": "END", "requests": [_request(i) for i in range(count)]}).encode()


def _ndjson_upload(mib: int) -> bytes:
    count = mib * 1024 * 1024 // len(json.dumps(_request(0)))
    return "".join(json.dumps({"model": MODEL_ID, **_request(i)}) + "\n" for i in range(count)).encode()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self.baseline = _rss_mib(pid)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss_mib(self.pid))

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("kind", ["json", "ndjson"])
def test_memory_stays_bounded_during_a_large_upload(upload_api, kind):
    body = _json_upload(UPLOAD_MIB) if kind == "json" else _ndjson_upload(UPLOAD_MIB)
    content_type = "application/json" if kind == "json" else "application/x-ndjson"
    pid = upload_api.process.pid
    with RssSampler(pid) as rss:
        response = httpx.post(upload_api.extra["url"] + "/v1/ranking/jobs", content=body,
                              headers={"content-type": content_type}, timeout=300)  # fmt: skip
    assert response.status_code == 202, response.text[:500]
    assert response.json()["progress"]["total_requests"] > 20_000
    growth = rss.peak - rss.baseline
    # the whole upload is 32 MiB; a parsed copy of it is about 30 times that
    assert growth < 100, f"API RSS grew by {growth:.0f} MiB during a {UPLOAD_MIB} MiB {kind} upload"


def test_an_endless_ndjson_line_is_refused_early_and_cheaply(upload_api):
    line = b'{"model": "' + MODEL_ID.encode() + b'", "query": {"text": "' + b"q" * (32 * 1024 * 1024) + b'"}}'
    pid = upload_api.process.pid
    cpu_before, started = _cpu_seconds(pid), time.monotonic()
    response = httpx.post(upload_api.extra["url"] + "/v1/ranking/jobs", content=line,
                          headers={"content-type": "application/x-ndjson"}, timeout=120)  # fmt: skip
    assert response.status_code == 413, response.text[:300]
    assert "RERANK_MAX_BODY_BYTES" in ErrorEnvelope.model_validate(response.json()).error.message
    assert _cpu_seconds(pid) - cpu_before < 3, "the API spent seconds of CPU on one line"
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_only_json_and_ndjson_are_accepted(upload_api, content_type):
    body = json.dumps({"model": MODEL_ID, "requests": [_request(0)]})
    response = httpx.post(upload_api.extra["url"] + "/v1/ranking/jobs", content=body,
                          headers={"content-type": content_type}, timeout=30)  # fmt: skip
    assert response.status_code == 415, response.text
    assert "application/json" in ErrorEnvelope.model_validate(response.json()).error.message


def test_idempotency_keys_are_bounded(upload_api):
    body = json.dumps({"model": MODEL_ID, "requests": [_request(0)]})
    for key in ("k" * 200, "key with spaces", "key\u00e9"):
        response = httpx.post(upload_api.extra["url"] + "/v1/ranking/jobs", content=body.encode(),
                              headers={"content-type": "application/json", "idempotency-key": key.encode("utf-8")},
                              timeout=30)  # fmt: skip
        assert response.status_code == 400, (key[:20], response.text)


def test_jobs_in_flight_and_bytes_staged_per_caller_are_capped(log_dir, upload_redis):
    # a key of its own: the jobs of the tests above (caller 127.0.0.1) hold their bytes until they expire
    api = start_api(log_dir, redis_url=upload_redis.extra["url"], model="unused", model_id=MODEL_ID,
                    job_max_active=2, job_max_staged_bytes=200_000, api_key="capped-caller")  # fmt: skip
    try:
        url = api.extra["url"] + "/v1/ranking/jobs"
        small = json.dumps({"model": MODEL_ID, "requests": [_request(0)]}).encode()
        headers = {"content-type": "application/json", "authorization": "Bearer capped-caller"}
        assert [httpx.post(url, content=small, headers=headers, timeout=30).status_code for _ in range(2)] == [202, 202]
        third = httpx.post(url, content=small, headers=headers, timeout=30)
        assert third.status_code == 429, third.text
        assert int(third.headers["retry-after"]) >= 1
        assert "RERANK_JOB_MAX_ACTIVE" in third.json()["error"]["message"]
        _cancel_all(url, headers)
        big = json.dumps({"model": MODEL_ID, "requests": [_request(i) for i in range(300)]}).encode()
        assert len(big) > 200_000
        too_big = httpx.post(url, content=big, headers=headers, timeout=30)
        assert too_big.status_code == 429, too_big.text
        assert "RERANK_JOB_MAX_STAGED_BYTES" in too_big.json()["error"]["message"]
        assert httpx.post(url, content=small, headers=headers, timeout=30).status_code == 202  # nothing of it was kept
    finally:
        api.stop()


def _cancel_all(url: str, headers: dict) -> None:
    for job in httpx.get(url, params={"limit": 100}, headers=headers, timeout=30).json()["data"]:
        httpx.delete(f"{url}/{job['id']}", headers=headers, timeout=30)


def test_metrics_report_redis_memory(upload_api):
    text = httpx.get(upload_api.extra["url"] + "/metrics", timeout=30).text
    used = [line for line in text.splitlines() if line.startswith("rerank_redis_used_memory_bytes ")]
    assert used and float(used[0].split()[1]) > 0
    assert "rerank_redis_maxmemory_bytes" in text
    assert "_created" not in text
