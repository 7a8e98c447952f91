"""RERANK_LOG_FORMAT=json: the request id a client sends (or the API makes up) is echoed and follows the
request into the worker's log lines; no log line holds a query or passage text."""

from __future__ import annotations

import json
import re
import time
import uuid

import httpx
import pytest

from tests.processes import start_api, start_worker

MODEL_ID = "acme/tiny-bert-json-logs"
SECRET_QUERY = "who signed the undisclosed settlement"
SECRET_PASSAGE = "the undisclosed settlement was signed by the board"


@pytest.fixture(scope="module")
def json_stack(log_dir, redis_server, bert_model_dir):
    redis_url = redis_server.extra["url"]
    worker = start_worker(log_dir, redis_url=redis_url, model=bert_model_dir, model_id=MODEL_ID, log_format="json")
    api = start_api(log_dir, redis_url=redis_url, model=bert_model_dir, model_id=MODEL_ID, log_format="json")
    yield api, worker
    api.stop()
    worker.stop()


def _rank(api, headers: dict[str, str]) -> httpx.Response:
    body = {"model": MODEL_ID, "query": {"text": SECRET_QUERY}, "passages": [{"text": SECRET_PASSAGE}, {"text": "b"}]}
    response = httpx.post(api.extra["url"] + "/v1/ranking", json=body, headers=headers, timeout=60)
    assert response.status_code == 200
    return response


def _lines_with(proc, request_id: str, logger: str, timeout: float = 15) -> list[dict]:
    """The JSON log lines of `proc` from `logger` that carry `request_id`."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in _json_lines(proc.log()) if line.get("request_id") == request_id and line["logger"] == logger]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_the_clients_request_id_is_echoed_and_reaches_the_worker_log(json_stack) -> None:
    api, worker = json_stack
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    assert _rank(api, {"X-Request-Id": request_id}).headers["x-request-id"] == request_id
    (task_line,) = _lines_with(worker, request_id, "worker.tasks")
    assert task_line["task"] == "rerank.rank" and task_line["outcome"] == "ok"
    assert task_line["passages"] == 2 and task_line["model"] == MODEL_ID
    assert task_line["worker"] == worker.extra["name"]
    (access_line,) = _lines_with(api, request_id, "api.access")
    assert access_line["message"] == "POST /v1/ranking 200" and access_line["status"] == 200
    for proc in (api, worker):
        assert SECRET_PASSAGE not in proc.log() and SECRET_QUERY not in proc.log()


def test_a_request_without_an_id_gets_one(json_stack) -> None:
    api, worker = json_stack
    request_id = _rank(api, {}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert _lines_with(worker, request_id, "worker.tasks")
    assert _lines_with(api, request_id, "api.access")


def test_every_line_about_a_request_is_json(json_stack) -> None:
    api, worker = json_stack
    request_id = _rank(api, {"X-Request-Id": "every-line-json"}).headers["x-request-id"]
    assert _lines_with(worker, request_id, "worker.tasks")
    for proc in (api, worker):
        mentioning = [line for line in proc.log().splitlines() if request_id in line]
        assert mentioning and all(json.loads(line)["request_id"] == request_id for line in mentioning)
