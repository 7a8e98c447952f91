"""Batch jobs end to end: real Redis, real worker processes, real HTTP; compared with /v1/ranking."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time

import httpx
import pytest

from shared.job_schemas import Job, JobList
from tests.processes import start_api, start_worker, worker_report

WORDS = "energy light plant cell water root leaf sun carbon oxygen sugar green river stone cloud".split()


def make_requests(count: int, seed: int = 3, max_passages: int = 12, words: int = 40) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "custom_id": f"req-{i}",
            "query": {"text": " ".join(rng.choices(WORDS, k=4))},
            "passages": [{"text": " ".join(rng.choices(WORDS, k=rng.randint(2, words)))}
                         for _ in range(rng.randint(1, max_passages))],  # fmt: skip
        }
        for i in range(count)
    ]


def wait_for(url: str, job_id: str, statuses=("succeeded", "failed", "cancelled"), timeout: float = 120) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = Job.model_validate(httpx.get(f"{url}/v1/ranking/jobs/{job_id}").json())
        if job.status in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.status}: {job.progress}"
        time.sleep(0.2)


def results(url: str, job_id: str) -> list[dict]:
    with httpx.stream("GET", f"{url}/v1/ranking/jobs/{job_id}/results", timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in response.iter_lines() if line]


def synchronous(url: str, model: str, requests: list[dict]) -> list[dict]:
    async def send_all():
        async with httpx.AsyncClient(timeout=120) as client:
            semaphore = asyncio.Semaphore(16)

            async def one(request):
                async with semaphore:
                    body = {"model": model, "query": request["query"], "passages": request["passages"]}
                    return (await client.post(f"{url}/v1/ranking", json=body)).json()

            return await asyncio.gather(*(one(r) for r in requests))

    return asyncio.run(send_all())


def test_a_200_request_job_equals_synchronous_ranking(bert_stack):
    requests = make_requests(200)
    submitted = httpx.post(
        f"{bert_stack.url}/v1/ranking/jobs", json={"model": bert_stack.model_id, "requests": requests}, timeout=60
    )
    assert submitted.status_code == 202, submitted.text
    job = Job.model_validate(submitted.json())
    assert submitted.headers["location"] == f"/v1/ranking/jobs/{job.id}"
    assert job.progress.total_requests == 200
    assert job.progress.total_pairs == sum(len(r["passages"]) for r in requests)
    done = wait_for(bert_stack.url, job.id)
    assert done.status == "succeeded"
    assert done.progress.completed_requests == 200 and done.progress.failed_requests == 0
    assert done.progress.completed_pairs == done.progress.total_pairs
    assert done.started_at is not None and done.finished_at >= done.started_at
    lines = results(bert_stack.url, job.id)
    assert [line["index"] for line in lines] == list(range(200))
    assert [line["custom_id"] for line in lines] == [r["custom_id"] for r in requests]
    for line, sync in zip(lines, synchronous(bert_stack.url, bert_stack.model_id, requests)):
        got, want = line["response"]["rankings"], sync["rankings"]
        assert [r["index"] for r in got] == [r["index"] for r in want]
        assert [r["logit"] for r in got] == pytest.approx([r["logit"] for r in want], abs=1e-5)
        assert line["response"]["usage"] == sync["usage"]
    listed = JobList.model_validate(httpx.get(f"{bert_stack.url}/v1/ranking/jobs").json())
    assert job.id in [j.id for j in listed.data]


def test_ndjson_upload_with_custom_ids_and_per_line_errors(bert_stack):
    good = make_requests(6, seed=5)
    lines = [json.dumps({"model": bert_stack.model_id, **good[0], "truncate": "end", "top_n": 1})]
    lines.append(json.dumps({**good[1], "custom_id": "too-long",
                             "passages": [{"text": "word " * 700}]}))  # over 512 tokens, NONE  # fmt: skip
    lines.append("{this is not json")
    lines.append(json.dumps({"custom_id": "no-passages", "query": {"text": "q"}}))
    lines.append(json.dumps({"custom_id": "too-many", "query": {"text": "q"}, "passages": [{"text": "p"}] * 513}))
    lines.append(json.dumps({**good[2], "custom_id": "other-model", "model": "someone/else"}))
    lines += [json.dumps(r) for r in good[3:]]
    body = ("\n".join(lines) + "\n").encode()
    submitted = httpx.post(f"{bert_stack.url}/v1/ranking/jobs", content=body,
                           headers={"content-type": "application/x-ndjson"})  # fmt: skip
    assert submitted.status_code == 202, submitted.text
    done = wait_for(bert_stack.url, submitted.json()["id"])
    assert done.status == "succeeded"
    assert done.progress.total_requests == 9
    assert (done.progress.completed_requests, done.progress.failed_requests) == (4, 5)
    out = results(bert_stack.url, done.id)
    assert [line["index"] for line in out] == list(range(9))
    assert out[0]["custom_id"] == "req-0" and len(out[0]["response"]["rankings"]) == 1
    assert out[1]["custom_id"] == "too-long" and out[1]["error"]["type"] == "validation_error"
    assert out[1]["error"]["message"].startswith("passage 0:")
    assert "custom_id" not in out[2] and out[2]["error"]["type"] == "invalid_request_error"
    assert out[3]["custom_id"] == "no-passages" and "passages" in out[3]["error"]["message"]
    assert out[4]["custom_id"] == "too-many" and out[4]["error"]["type"] == "request_too_large"
    assert out[5]["custom_id"] == "other-model" and out[5]["error"]["type"] == "not_found_error"
    assert [line["custom_id"] for line in out[6:]] == ["req-3", "req-4", "req-5"]
    assert all("response" in line for line in out[6:])


def test_idempotency_key_returns_the_same_job(bert_stack):
    body = {"model": bert_stack.model_id, "requests": make_requests(3, seed=9)}
    headers = {"Idempotency-Key": f"key-{time.time_ns()}"}
    first = httpx.post(f"{bert_stack.url}/v1/ranking/jobs", json=body, headers=headers)
    second = httpx.post(f"{bert_stack.url}/v1/ranking/jobs", json=body, headers=headers)
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    third = httpx.post(f"{bert_stack.url}/v1/ranking/jobs", json=body)
    assert third.json()["id"] != first.json()["id"]


def test_cancel_mid_job_stops_unstarted_chunks_and_keeps_every_line(bert_stack):
    requests = make_requests(500, seed=11, max_passages=40, words=60)
    job = httpx.post(f"{bert_stack.url}/v1/ranking/jobs",
                     json={"model": bert_stack.model_id, "requests": requests}).json()  # fmt: skip
    running = wait_for(bert_stack.url, job["id"], statuses=("running",), timeout=60)
    assert running.status == "running"
    cancelled = httpx.delete(f"{bert_stack.url}/v1/ranking/jobs/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    time.sleep(2)  # chunks already on the model may still finish
    final = wait_for(bert_stack.url, job["id"])
    assert final.status == "cancelled"
    assert final.progress.completed_requests < 500
    out = results(bert_stack.url, job["id"])
    assert [line["index"] for line in out] == list(range(500))
    skipped = [line for line in out if "error" in line]
    assert skipped and all(line["error"]["type"] == "cancelled" for line in skipped)
    assert all(line["custom_id"] == f"req-{line['index']}" for line in out)
    assert len(out) - len(skipped) == final.progress.completed_requests


def test_results_of_unknown_or_unfinished_jobs_are_refused(log_dir, redis_server, bert_stack):
    assert httpx.get(f"{bert_stack.url}/v1/ranking/jobs/nope").status_code == 404
    assert httpx.get(f"{bert_stack.url}/v1/ranking/jobs/nope/results").status_code == 404
    # a model whose queue no worker consumes keeps its job queued
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model="idle/model")
    try:
        job = httpx.post(f"{api.extra['url']}/v1/ranking/jobs",
                         json={"model": "idle/model", "requests": make_requests(2)}).json()  # fmt: skip
        assert job["status"] == "queued"
        early = httpx.get(f"{api.extra['url']}/v1/ranking/jobs/{job['id']}/results")
        assert early.status_code == 409 and early.json()["error"]["type"] == "conflict_error"
        unknown = httpx.post(f"{api.extra['url']}/v1/ranking/jobs", json={"model": "x/y", "requests": make_requests(1)})
        assert unknown.status_code == 404
        empty = httpx.post(f"{api.extra['url']}/v1/ranking/jobs", json={"model": "idle/model", "requests": []})
        assert empty.status_code == 422
    finally:
        api.stop()


def test_limits_give_413(log_dir, redis_server, bert_stack):
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model="unused", model_id=bert_stack.model_id,
                    job_max_requests=5, job_max_upload_bytes=4096)  # fmt: skip
    try:
        url = f"{api.extra['url']}/v1/ranking/jobs"
        listed_before = httpx.get(url, params={"limit": 100}).json()["data"]
        too_many = httpx.post(url, json={"model": bert_stack.model_id, "requests": make_requests(6, max_passages=1)})
        assert too_many.status_code == 413 and "5" in too_many.json()["error"]["message"]
        big = "\n".join(json.dumps({"model": bert_stack.model_id, **r}) for r in make_requests(5, words=200))
        too_big = httpx.post(url, content=big.encode(), headers={"content-type": "application/x-ndjson"})
        assert too_big.status_code == 413
        assert httpx.get(url, params={"limit": 100}).json()["data"] == listed_before  # nothing half-made is left
    finally:
        api.stop()


def test_jobs_expire_after_their_ttl(log_dir, redis_server, bert_stack):
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model="unused", model_id=bert_stack.model_id,
                    job_ttl=3)  # fmt: skip
    try:
        job = httpx.post(f"{api.extra['url']}/v1/ranking/jobs",
                         json={"model": bert_stack.model_id, "requests": make_requests(2)}).json()  # fmt: skip
        assert wait_for(api.extra["url"], job["id"], timeout=30).status == "succeeded"
        time.sleep(4)
        assert httpx.get(f"{api.extra['url']}/v1/ranking/jobs/{job['id']}").status_code == 404
    finally:
        api.stop()


def test_a_worker_killed_mid_job_loses_and_duplicates_nothing(log_dir, redis_server, bert_model_dir):
    redis_url, model_id = redis_server.extra["url"], "kill-test"
    settings = {"job_visibility_timeout": 3, "job_chunk_pairs": 64}
    first = start_worker(log_dir, redis_url=redis_url, model=bert_model_dir, model_id=model_id, **settings)
    second = None
    api = start_api(log_dir, redis_url=redis_url, model=bert_model_dir, model_id=model_id, **settings)
    try:
        requests = make_requests(240, seed=13, max_passages=30, words=60)
        job = httpx.post(f"{api.extra['url']}/v1/ranking/jobs",
                         json={"model": model_id, "requests": requests}).json()  # fmt: skip
        # the first worker, alone, is at work on the job: it holds chunks when it is killed
        running = wait_for(api.extra["url"], job["id"], statuses=("running",), timeout=60)
        while running.progress.completed_requests == 0:
            time.sleep(0.02)
            running = Job.model_validate(httpx.get(f"{api.extra['url']}/v1/ranking/jobs/{job['id']}").json())
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        assert wait_for(api.extra["url"], job["id"], statuses=("running",)).progress.completed_requests < 240
        second = start_worker(log_dir, redis_url=redis_url, model=bert_model_dir, model_id=model_id, **settings)
        done = wait_for(api.extra["url"], job["id"], timeout=180)
        assert done.status == "succeeded"
        assert done.progress.completed_requests == 240 and done.progress.failed_requests == 0
        assert done.progress.completed_pairs == done.progress.total_pairs
        out = results(api.extra["url"], job["id"])
        assert [line["index"] for line in out] == list(range(240))
        assert all("response" in line for line in out)
    finally:
        api.stop()
        if second is not None:
            second.stop()
        first.stop()
