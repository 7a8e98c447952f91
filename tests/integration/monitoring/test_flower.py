"""Flower, started for real against the test Redis and worker: it lists the worker and its ranking tasks
(whose arguments show counts, never texts), asks for its basic-auth credentials, and its dashboard can be
photographed with headless Chromium."""

from __future__ import annotations

import io
import time

import httpx
import pytest

from ops.docs.flower_screenshot import find_chromium, take_screenshot
from tests.processes import start_flower

AUTH = ("flower-admin", "flower-test-password")
SECRET_PASSAGE = "the confidential merger memo of 2026"


@pytest.fixture(scope="module")
def flower(log_dir, redis_server, bert_stack):
    proc = start_flower(log_dir, redis_url=redis_server.extra["url"], basic_auth=":".join(AUTH))
    yield proc
    proc.stop()


def _poll(fetch, accept, timeout: float = 30):
    """fetch() until accept(result) holds; the last result either way."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if accept(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def test_flower_requires_its_credentials(flower) -> None:
    assert httpx.get(flower.extra["url"] + "/api/workers", timeout=10).status_code == 401
    assert httpx.get(flower.extra["url"] + "/api/workers", auth=("flower-admin", "wrong"), timeout=10).status_code == 401
    assert httpx.get(flower.extra["url"] + "/healthcheck", timeout=10).text == "OK"  # for container probes


def test_flower_lists_the_worker_by_its_readable_name(flower, bert_stack) -> None:
    name = bert_stack.worker.extra["name"]
    assert name.startswith("rerank-acme-tiny-bert-reranker-cpu-")
    workers = _poll(
        lambda: httpx.get(flower.extra["url"] + "/api/workers?refresh=1", auth=AUTH, timeout=30).json(),
        lambda found: name in found,
    )
    assert name in workers
    queues = {queue["name"] for queue in workers[name]["active_queues"]}
    assert queues == {"rank.acme/tiny-bert-reranker.interactive", "rank.acme/tiny-bert-reranker.batch"}


def test_flower_shows_a_completed_ranking_task_without_its_texts(flower, bert_stack) -> None:
    _poll(lambda: _dashboard_workers(flower), lambda rows: bert_stack.worker.extra["name"] in rows)
    response = httpx.post(
        bert_stack.url + "/v1/ranking",
        json={"model": bert_stack.model_id, "query": {"text": "secret question"},
              "passages": [{"text": SECRET_PASSAGE}, {"text": "b"}, {"text": "c"}]},
        timeout=30,
    )  # fmt: skip
    assert response.status_code == 200
    tasks = _poll(
        lambda: httpx.get(flower.extra["url"] + "/api/tasks?taskname=rerank.rank", auth=AUTH, timeout=10).json(),
        lambda found: any(t["state"] == "SUCCESS" and "passages=3" in (t.get("args") or "") for t in found.values()),
    )
    done = [t for t in tasks.values() if t["state"] == "SUCCESS" and "passages=3" in (t.get("args") or "")]
    assert done, tasks
    task = done[-1]
    assert task["name"] == "rerank.rank"
    assert task["worker"] == bert_stack.worker.extra["name"]
    assert task["args"] == f"[model='{bert_stack.model_id}' passages=3 truncate=NONE]"
    assert SECRET_PASSAGE not in str(tasks) and "secret question" not in str(tasks)


@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (CI installs it: apt-get install chromium)")
def test_the_dashboard_screenshot_shows_a_real_page(flower, bert_stack, tmp_path) -> None:
    from PIL import Image

    _poll(lambda: _dashboard_workers(flower), lambda rows: bert_stack.worker.extra["name"] in rows)
    path = take_screenshot(flower.extra["url"] + "/", tmp_path / "flower.png", auth=":".join(AUTH))
    image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    assert image.size == (1400, 900)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, "a page with text and a table, not a blank frame"
    # Below the summary cards, only a worker row is green (its name link and its Online badge): an empty
    # table ("No workers are available.") has no green pixel there.
    table = image.crop((0, 380, 1400, 900)).getcolors(maxcolors=1 << 20)
    assert sum(count for count, (r, g, b) in table if g > 100 and g > r + 40 and g > b + 40) > 200


def _dashboard_workers(flower) -> dict:
    """The rows of the dashboard's worker table, by worker name."""
    rows = httpx.get(flower.extra["url"] + "/workers?json=1", auth=AUTH, timeout=10).json()["data"]
    return {row["hostname"]: row for row in rows}


def test_flower_shows_an_error_answer_as_a_failed_task_with_its_reason(flower, bert_stack) -> None:
    secret = "the undisclosed quarterly figures " * 300  # far over the model's limit: refused with NONE
    response = httpx.post(bert_stack.url + "/v1/ranking", json={"model": bert_stack.model_id,
                          "query": {"text": "q"}, "passages": [{"text": secret}]}, timeout=30)  # fmt: skip
    assert response.status_code == 400
    tasks = _poll(
        lambda: httpx.get(flower.extra["url"] + "/api/tasks?taskname=rerank.rank&state=FAILURE", auth=AUTH,
                          timeout=10).json(),  # fmt: skip
        lambda found: any("validation_error" in str(t.get("exception") or t.get("result")) for t in found.values()),
    )
    failed = [t for t in tasks.values() if "validation_error" in str(t.get("exception") or t.get("result"))]
    assert failed and failed[-1]["state"] == "FAILURE", tasks
    assert "undisclosed" not in str(tasks)
