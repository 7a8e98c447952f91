"""A batch job under control: a cancel stops its work at once and deletes what it staged, and a chunk that waits
for a slot stays one task. A MiniLM-L6 worker of one chunk slot, one torch thread and one-pair passes, so that a
chunk of 128 long pairs takes seconds."""

from __future__ import annotations

import re
import time

import httpx
import pytest
import redis

from ops.models.builder import build_minilm
from shared.job_keys import chunk_key
from tests.processes import start_api, start_redis, start_worker

MODEL_ID = "control/minilm"
PASSAGE = "paris is a city in france and its capital " * 40  # 512 tokens once truncated
SLOW = {"job_concurrency": 1, "max_batch_tokens": 64, "job_batch_tokens": 64, "torch_threads": 1}


@pytest.fixture(scope="module")
def slow_fleet(log_dir, tmp_path_factory):
    model_dir = str(build_minilm(tmp_path_factory.mktemp("minilm")))
    redis_proc = start_redis(log_dir)
    url = redis_proc.extra["url"]
    worker = start_worker(log_dir, redis_url=url, model=model_dir, model_id=MODEL_ID, **SLOW)
    api = start_api(log_dir, redis_url=url, model=model_dir, model_id=MODEL_ID, job_chunk_pairs=128, job_window=2)
    yield api.extra["url"], redis.Redis.from_url(url), worker
    api.stop()
    worker.stop()
    redis_proc.stop()


def submit(url: str, requests: list[dict]) -> dict:
    response = httpx.post(f"{url}/v1/ranking/jobs", json={"model": MODEL_ID, "truncate": "END", "requests": requests},
                          timeout=60)  # fmt: skip
    assert response.status_code == 202, response.text
    return response.json()


def wait_status(url: str, job_id: str, statuses: tuple[str, ...], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{url}/v1/ranking/jobs/{job_id}", timeout=10).json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job still {job['status']} after {timeout}s: {job['progress']}"
        time.sleep(0.05)


def long_requests(count: int) -> list[dict]:
    """Requests of 128 long passages (distinct: identical pairs are scored once), each pair a forward pass of its
    own: one makes a chunk."""
    return [{"query": {"text": "capital"}, "passages": [{"text": f"{r} {p} {PASSAGE}"} for p in range(128)]}
            for r in range(count)]  # fmt: skip


def big_job(url: str) -> dict:
    return submit(url, long_requests(3))  # 3 chunks


def test_cancel_frees_the_fleet_at_once_and_deletes_the_staged_chunks(slow_fleet):
    url, client, _ = slow_fleet
    job = big_job(url)
    wait_status(url, job["id"], ("running",), timeout=60)
    time.sleep(1.0)  # the first chunk is on the model, the second waits for the slot
    staged = [chunk_key(job["id"], n) for n in range(3)]
    assert client.exists(*staged) == 3
    cancel = httpx.delete(f"{url}/v1/ranking/jobs/{job['id']}", timeout=10).json()
    assert cancel["status"] == "cancelled"
    left = client.exists(*staged)
    print("staged chunks left after the cancel:", left)
    started = time.monotonic()
    small = submit(url, [{"query": {"text": "capital"}, "passages": [{"text": "paris"}, {"text": "lyon"}]}])
    done = wait_status(url, small["id"], ("succeeded", "failed"), timeout=120)
    took = time.monotonic() - started
    print(f"a one-request job after the cancel took {took:.2f}s")
    assert done["status"] == "succeeded"
    assert took < 3.0, f"a one-request job took {took:.1f}s after the cancel: the cancelled chunks held the slot"
    cancelled = httpx.get(f"{url}/v1/ranking/jobs/{job['id']}", timeout=10).json()
    assert cancelled["progress"]["completed_requests"] == cancel["progress"]["completed_requests"]  # none since
    assert left == 0, f"{left} staged chunks of the cancelled job were still in Redis after the cancel"


def test_a_chunk_waiting_for_a_slot_is_one_task(slow_fleet):
    url, _, worker = slow_fleet
    before = len(re.findall(r"rerank\.job_chunk\[[0-9a-f-]+\] received", worker.log()))
    job = submit(url, long_requests(2))  # 2 chunks: the second waits for the one slot
    done = wait_status(url, job["id"], ("succeeded", "failed"), timeout=120)
    assert done["status"] == "succeeded"
    received = len(re.findall(r"rerank\.job_chunk\[[0-9a-f-]+\] received", worker.log())) - before
    print(f"2 chunks, {received} chunk tasks received")
    assert received == 2, f"2 chunks made {received} tasks: the chunk waiting for the slot was queued again"


def test_a_worker_stops_at_once_though_a_cancelled_job_was_running(slow_fleet):
    url, _, worker = slow_fleet
    job = big_job(url)
    wait_status(url, job["id"], ("running",), timeout=60)
    time.sleep(1.0)
    httpx.delete(f"{url}/v1/ranking/jobs/{job['id']}", timeout=10)
    started = time.monotonic()
    worker.process.terminate()
    worker.process.wait(60)
    took = time.monotonic() - started
    print(f"the worker stopped {took:.2f}s after SIGTERM")
    assert took < 5.0, f"the worker took {took:.1f}s to stop: it waited for the cancelled job's chunk"
