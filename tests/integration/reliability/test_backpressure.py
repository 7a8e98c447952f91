"""Backpressure and deadlines: a bounded backlog per model over API processes, requests nobody waits for dropped."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import numpy as np
import pytest
import redis
import tritonclient.grpc
from celery import Celery

from shared.celery_app import RANK_TASK, interactive_queue
from shared.errors import ErrorAnswer
from shared.schemas import ErrorEnvelope, RankTask
from shared.task_keys import admitted_key, task_cancelled_key
from tests.processes import silent_worker, start_api, worker_report

BODY = {"query": {"text": "q"}, "passages": [{"text": "p"}]}


async def _post_all(urls: list[str], model: str, timeout: float = 30) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=timeout) as client:
        return await asyncio.gather(*(client.post(url + "/v1/ranking", json={"model": model, **BODY}) for url in urls))


def test_the_backlog_is_bounded_over_api_processes_and_refused_at_once(log_dir, redis_server):
    """Two API processes share RERANK_MAX_QUEUED_REQUESTS=2: the third request, on either, is 429 at once."""
    model_id = "busy/model"
    settings = dict(model=model_id, request_timeout=4, max_queued_requests=2)
    first, second = (start_api(log_dir, redis_url=redis_server.extra["url"], **settings) for _ in range(2))
    try:
        with silent_worker(redis_server.extra["url"], model_id):

            async def scenario():
                waiting = asyncio.ensure_future(_post_all([first.extra["url"], second.extra["url"]], model_id))
                client = redis.Redis.from_url(redis_server.extra["url"])
                while client.zcard(admitted_key(model_id)) < 2:
                    await asyncio.sleep(0.05)
                started = time.monotonic()
                refused = await _post_all([second.extra["url"]], model_id)
                refused_after = time.monotonic() - started
                return await waiting, refused[0], refused_after

            held, refused, refused_after = asyncio.run(scenario())
            assert refused.status_code == 429
            assert ErrorEnvelope.model_validate(refused.json()).error.type == "overloaded_error"
            assert int(refused.headers["retry-after"]) >= 1
            assert refused_after < 1.0
            assert [r.status_code for r in held] == [504, 504]  # the silent worker never answers
            # the places are free again once the held requests ended
            assert redis.Redis.from_url(redis_server.extra["url"]).zcard(admitted_key(model_id)) == 0
            again = httpx.post(first.extra["url"] + "/v1/ranking", json={"model": model_id, **BODY}, timeout=30)
            assert again.status_code == 504
    finally:
        first.stop()
        second.stop()


def test_grpc_gets_resource_exhausted_when_the_backlog_is_full(log_dir, redis_server):
    model_id = "busy-grpc/model"
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model=model_id, request_timeout=4,
                    max_queued_requests=1)  # fmt: skip
    try:
        with silent_worker(redis_server.extra["url"], model_id):

            async def scenario():
                held = asyncio.ensure_future(_post_all([api.extra["url"]], model_id))
                client = redis.Redis.from_url(redis_server.extra["url"])
                while client.zcard(admitted_key(model_id)) < 1:
                    await asyncio.sleep(0.05)
                error = await asyncio.to_thread(_grpc_infer, api.extra["grpc"], "busy_grpc_model")
                await held
                return error

            error = asyncio.run(scenario())
            assert error is not None and error.status() == "StatusCode.RESOURCE_EXHAUSTED"
    finally:
        api.stop()


def _grpc_infer(address: str, model: str, timeout: float | None = None):
    """The InferenceServerException of one ModelInfer call, or None if it succeeded."""
    client = tritonclient.grpc.InferenceServerClient(address)
    query, passage = (tritonclient.grpc.InferInput(name, [1], "BYTES") for name in ("query", "passage"))
    query.set_data_from_numpy(np.array(["q"], dtype=object))
    passage.set_data_from_numpy(np.array(["p"], dtype=object))
    try:
        client.infer(model, [query, passage], client_timeout=timeout)
    except tritonclient.utils.InferenceServerException as exc:
        return exc
    finally:
        client.close()
    return None


def test_a_client_that_disconnects_frees_its_place_and_its_task_is_cancelled(log_dir, redis_server):
    model_id = "leaving/model"
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model=model_id, request_timeout=30)
    client = redis.Redis.from_url(redis_server.extra["url"])
    try:
        with silent_worker(redis_server.extra["url"], model_id):
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(api.extra["url"] + "/v1/ranking", json={"model": model_id, **BODY}, timeout=1.0)
            deadline = time.monotonic() + 5
            while client.zcard(admitted_key(model_id)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.zcard(admitted_key(model_id)) == 0
            assert len(client.keys(task_cancelled_key("*"))) >= 1
            # a gRPC client's deadline ends the call the same way
            before = set(client.keys(task_cancelled_key("*")))  # marks expire: compare keys, not counts
            error = _grpc_infer(api.extra["grpc"], "leaving_model", timeout=1)
            assert error is not None and error.status() == "StatusCode.DEADLINE_EXCEEDED"
            deadline = time.monotonic() + 5
            # the task is marked cancelled, then the place is given back: wait for both, as for HTTP above
            while (not set(client.keys(task_cancelled_key("*"))) - before or client.zcard(admitted_key(model_id))) \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            assert set(client.keys(task_cancelled_key("*"))) - before
            assert client.zcard(admitted_key(model_id)) == 0
    finally:
        api.stop()


def test_a_worker_skips_requests_past_their_deadline_or_cancelled(bert_stack):
    """Sent straight to the queue, so nothing but the worker decides: neither is scored."""
    celery = Celery(broker=bert_stack.redis_url, backend=bert_stack.redis_url)
    celery.conf.update(task_serializer="json", accept_content=["json"], result_accept_content=["json"])
    client = redis.Redis.from_url(bert_stack.redis_url)
    pairs_before = worker_report(bert_stack.redis_url, bert_stack.worker.extra["name"])["batch_stats"]["pairs"]
    task = RankTask(request_id="r", model_id=bert_stack.model_id, query="q", passages=["a", "b"], truncate="NONE")
    expired = task.model_copy(update={"deadline": time.time() - 1}).model_dump()
    cancelled_id = uuid.uuid4().hex
    client.set(task_cancelled_key(cancelled_id), 1, ex=60)
    live = task.model_copy(update={"deadline": time.time() + 60}).model_dump()
    results = [
        celery.send_task(RANK_TASK, args=[payload], task_id=task_id, queue=interactive_queue(bert_stack.model_id))
        for payload, task_id in ((expired, None), (live, cancelled_id))
    ]
    # an error answer is a FAILURE (Flower counts it), its error in the raised ErrorAnswer (Celery rebuilds it
    # from its module only where that is imported already, as in the API: imported above, not by chance)
    answers = [r.get(timeout=30, propagate=False) for r in results]
    assert all(isinstance(answer, ErrorAnswer) for answer in answers), answers
    errors = [answer.error for answer in answers]
    assert [r.state for r in results] == ["FAILURE", "FAILURE"]
    assert [e["type"] for e in errors] == ["timeout_error", "timeout_error"]
    assert "deadline" in errors[0]["message"] and "gave up" in errors[1]["message"]
    pairs_after = worker_report(bert_stack.redis_url, bert_stack.worker.extra["name"])["batch_stats"]["pairs"]
    assert pairs_after == pairs_before
    ok = celery.send_task(RANK_TASK, args=[live], queue=interactive_queue(bert_stack.model_id)).get(timeout=30)
    assert len(ok["ok"]["logits"]) == 2


def test_a_short_burst_on_a_real_worker_is_served_or_refused_fast(log_dir, redis_server, bert_stack):
    """The overload drill in small: 80 requests at once against a backlog of 4; nothing but 200 or 429."""
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model="unused", model_id=bert_stack.model_id,
                    max_queued_requests=4)  # fmt: skip
    body = {"model": bert_stack.model_id, "query": {"text": "q"}, "passages": [{"text": f"p{i}"} for i in range(20)]}
    try:

        async def burst():
            async with httpx.AsyncClient(base_url=api.extra["url"], timeout=30) as client:

                async def one():
                    started = time.monotonic()
                    response = await client.post("/v1/ranking", json=body)
                    return response.status_code, time.monotonic() - started

                return await asyncio.gather(*(one() for _ in range(80)))

        answers = asyncio.run(burst())
        statuses = [status for status, _ in answers]
        assert set(statuses) == {200, 429}, statuses
        assert max(seconds for status, seconds in answers if status == 429) < 5  # refused, never queued
        after = httpx.post(api.extra["url"] + "/v1/ranking", json=body, timeout=30)
        assert after.status_code == 200
        assert redis.Redis.from_url(redis_server.extra["url"]).zcard(admitted_key(bert_stack.model_id)) == 0
    finally:
        api.stop()
