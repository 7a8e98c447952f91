"""Batch jobs have their own thread budget in a worker (RERANK_JOB_CONCURRENCY): however many chunks are
queued, they never hold every task thread, so an interactive request is answered while a job runs."""

from __future__ import annotations

import time

import httpx

from tests.processes import start_api, start_redis, start_worker

MODEL_ID = "budget/tiny-bert"
PASSAGE = "paris is a city in france and its capital " * 40


def test_interactive_requests_get_a_thread_while_chunks_are_queued(log_dir, bert_model_dir):
    redis_proc = start_redis(log_dir)
    url = redis_proc.extra["url"]
    # two task threads; a job forward pass of one pair, so that a chunk takes seconds
    worker = start_worker(log_dir, redis_url=url, model=bert_model_dir, model_id=MODEL_ID, worker_concurrency=2,
                          job_concurrency=1, job_batch_tokens=64, torch_threads=1)  # fmt: skip
    api = start_api(log_dir, redis_url=url, model=bert_model_dir, model_id=MODEL_ID, job_chunk_pairs=1024, job_window=6)
    try:
        requests = [{"query": {"text": "capital"}, "passages": [{"text": PASSAGE}] * 512} for _ in range(12)]
        job = httpx.post(api.extra["url"] + "/v1/ranking/jobs", json={"model": MODEL_ID, "truncate": "END",
                         "requests": requests}, timeout=60).json()  # fmt: skip
        job_url = f"{api.extra['url']}/v1/ranking/jobs/{job['id']}"
        deadline = time.monotonic() + 60
        while httpx.get(job_url, timeout=10).json()["status"] == "queued" and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # both threads would hold a chunk by now, without the budget
        body = {"model": MODEL_ID, "query": {"text": "q"}, "passages": [{"text": "a"}, {"text": "b"}]}
        waits = []
        for _ in range(3):
            started = time.monotonic()
            assert httpx.post(api.extra["url"] + "/v1/ranking", json=body, timeout=120).status_code == 200
            waits.append(time.monotonic() - started)
        progress = httpx.get(job_url, timeout=10).json()["progress"]
        print("interactive waits", [round(w, 3) for w in waits], "job progress", progress)
        assert max(waits) < 1.5, f"interactive requests waited {[round(w, 2) for w in waits]} s behind chunks"
        assert progress["completed_requests"] < 10, "the job ended before the requests: chunks too fast to tell"
    finally:
        api.stop()
        worker.stop()
        redis_proc.stop()
