"""The engine process beside the worker's Celery process, both real, on CPU: parity, what each process loads,
what happens when the engine is killed mid-pass, and interactive work ahead of batch jobs across the boundary."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from shared.settings import Settings
from tests.processes import start_api, start_worker, worker_report
from worker.model.runtime import CrossEncoder

QUERY = "what is the capital city of france"
PASSAGES = ["paris is the capital and most populous city of france", "berlin is the capital of germany",
            "bananas are yellow", "", "paris " * 300, "the capital of france is paris"]  # fmt: skip
SHM_NAMES = ("psm_", "torch_", "rerank", "sem.")  # what Python's, torch's or our own shared memory would be called


def rank(url: str, model: str, passages: list[str], timeout: float = 60) -> httpx.Response:
    body = {"model": model, "query": {"text": QUERY}, "passages": [{"text": p} for p in passages], "truncate": "END"}
    return httpx.post(f"{url}/v1/ranking", json=body, timeout=timeout)


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def shared_memory_kept(maps: str) -> list[str]:
    """Mappings of /dev/shm files that still exist (a semaphore unlinked at once, as multiprocessing makes, is not)."""
    return [line for line in maps.splitlines() if "/dev/shm/" in line and not line.endswith("(deleted)")]


def shm_entries() -> set[str]:
    return {name for name in os.listdir("/dev/shm") if name.startswith(SHM_NAMES)} if os.path.isdir("/dev/shm") else set()


def test_the_fleet_scores_exactly_as_the_model_does_in_one_process(bert_stack, bert_model_dir):
    response = rank(bert_stack.url, bert_stack.model_id, PASSAGES)
    assert response.status_code == 200
    served = {r["index"]: r["logit"] for r in response.json()["rankings"]}
    encoder = CrossEncoder.load(Settings(model=bert_model_dir, device="cpu"))
    pairs = encoder.encode(QUERY, PASSAGES, "END")
    alone = [float(encoder.score(pairs.take([i]))[0]) for i in range(len(PASSAGES))]
    assert [served[i] for i in range(len(PASSAGES))] == pytest.approx(alone, abs=1e-6)
    assert response.json()["usage"]["prompt_tokens"] == int(pairs.lengths.sum())


def test_only_the_engine_loads_torch_and_neither_process_keeps_shared_memory(bert_stack):
    report = worker_report(bert_stack.redis_url, bert_stack.worker.extra["name"])
    celery_pid, engine_pid = bert_stack.worker.process.pid, report["engine_pid"]
    assert engine_pid != celery_pid
    celery_maps, engine_maps = mapped_files(celery_pid), mapped_files(engine_pid)
    assert "libtorch" not in celery_maps and "libcuda" not in celery_maps  # no torch: CUDA cannot start here
    assert "libtorch" in engine_maps
    assert shared_memory_kept(celery_maps) == [] and shared_memory_kept(engine_maps) == []


def test_a_killed_engine_answers_every_request_in_flight_and_a_new_one_serves(log_dir, redis_server, bert_model_dir):
    shm_before = shm_entries()
    model_id = "engine-kill"
    worker = start_worker(log_dir, redis_url=redis_server.extra["url"], model=bert_model_dir, model_id=model_id,
                          torch_threads=1)  # fmt: skip
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model=bert_model_dir, model_id=model_id)
    try:
        engine_pid = worker_report(redis_server.extra["url"], worker.extra["name"])["engine_pid"]
        # 512 passages a request: the work takes about twice the second before the kill on an idle 2-core machine
        # (tokenizing under END reads only the prefix a pair keeps, so 256 were done in 1.1 s, at the kill)
        long_passages = [" ".join(["word"] * 200 + [str(i)]) for i in range(512)]
        answers: list[httpx.Response] = []

        def send() -> None:
            answers.append(rank(api.extra["url"], model_id, long_passages, timeout=60))

        clients = [threading.Thread(target=send) for _ in range(6)]
        began = time.monotonic()
        for client in clients:
            client.start()
        time.sleep(1.0)  # the engine is busy with their passes
        os.kill(engine_pid, signal.SIGKILL)
        for client in clients:
            client.join(60)
        assert len(answers) == 6 and time.monotonic() - began < 30  # nothing waited for its 60 s timeout
        for answer in answers:
            assert answer.status_code in (200, 503), answer.text
            if answer.status_code == 503:
                assert answer.headers["Retry-After"] and answer.json()["error"]["type"] == "service_unavailable"
        assert any(answer.status_code == 503 for answer in answers)
        deadline = time.monotonic() + 90
        while True:  # the worker withdrew while its engine was down, and comes back with a new one
            try:
                report = worker_report(redis_server.extra["url"], worker.extra["name"], timeout=2)
                if report.get("engine_pid") not in (None, engine_pid):
                    break
            except AssertionError:
                pass
            assert time.monotonic() < deadline, worker.log()[-3000:]
            time.sleep(0.5)
        assert rank(api.extra["url"], model_id, PASSAGES).status_code == 200
        assert worker.process.poll() is None
    finally:
        api.stop()
        worker.stop()
    assert shm_entries() <= shm_before


def test_interactive_requests_go_ahead_of_a_batch_job_across_the_engine(bert_stack):
    rng = np.random.default_rng(0)
    words = ["paris", "capital", "france", "river", "city", "museum", "bridge", "night"]
    # 160 requests: a job's passes are as large as interactive ones now, so 40 were done within the first second
    requests = [{"query": {"text": QUERY}, "passages": [{"text": " ".join(rng.choice(words, 120))} for _ in range(50)]}
                for _ in range(160)]  # fmt: skip
    job = httpx.post(f"{bert_stack.url}/v1/ranking/jobs", json={"model": bert_stack.model_id, "truncate": "END",
                                                                 "requests": requests}, timeout=60).json()  # fmt: skip
    time.sleep(0.5)  # the job's chunks are with the worker
    began = time.perf_counter()
    assert rank(bert_stack.url, bert_stack.model_id, PASSAGES[:3]).status_code == 200
    interactive_seconds = time.perf_counter() - began
    status = httpx.get(f"{bert_stack.url}/v1/ranking/jobs/{job['id']}", timeout=10).json()
    assert status["status"] in ("queued", "running"), status  # the job still has pairs left...
    assert status["progress"]["completed_requests"] < 160
    deadline = time.monotonic() + 300
    while status["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
        status = httpx.get(f"{bert_stack.url}/v1/ranking/jobs/{job['id']}", timeout=10).json()
    job_seconds = time.perf_counter() - began
    assert status["status"] == "succeeded"
    assert interactive_seconds < job_seconds / 3  # ...and the interactive request did not wait behind them
