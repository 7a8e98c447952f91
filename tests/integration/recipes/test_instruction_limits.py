"""An `instruction` is bounded (RERANK_MAX_INSTRUCTION_CHARS), counted once per passage against
RERANK_MAX_REQUEST_CHARS (it is copied into every pair), and refused by the API before anything is queued for
a model whose workers announce a prompt that takes none. A fleet of its own: a Qwen3-shaped prompted worker
and a BERT cross-encoder worker on a fresh Redis, one API serving both."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
import redis
import tritonclient.grpc as grpcclient
import numpy as np

from api.ranking.model_names import grpc_model_name
from shared.registry import worker_info_key
from shared.schemas import ErrorEnvelope, RankingResponse
from tests.processes import start_api, start_redis, start_worker

QWEN3, BERT = "tiny-qwen3-reranker", "tiny-bert-reranker"
MAX_INSTRUCTION, MAX_REQUEST = 300, 20_000


@dataclass
class Fleet:
    url: str
    grpc: str
    redis_url: str
    workers: dict


@pytest.fixture(scope="module")
def fleet(log_dir, qwen3_model_dir, bert_model_dir):
    store = start_redis(log_dir)
    url = store.extra["url"]
    models = {QWEN3: qwen3_model_dir, BERT: bert_model_dir}
    with ThreadPoolExecutor(len(models)) as pool:
        workers = dict(zip(models, pool.map(lambda item: start_worker(log_dir, redis_url=url, model=item[1],
                                                                      model_id=item[0]), models.items())))  # fmt: skip
    api = start_api(log_dir, redis_url=url, models=",".join(f"{i}={d}" for i, d in models.items()),
                    max_instruction_chars=MAX_INSTRUCTION, max_request_chars=MAX_REQUEST)  # fmt: skip
    yield Fleet(api.extra["url"], api.extra["grpc"], url, workers)
    api.stop()
    for worker in workers.values():
        worker.stop()
    store.stop()


def rank(fleet: Fleet, model: str, passages: list[str], instruction: str | None) -> httpx.Response:
    body = {"model": model, "query": {"text": "which plant?"}, "passages": [{"text": p} for p in passages],
            "truncate": "END", "instruction": instruction}  # fmt: skip
    return httpx.post(fleet.url + "/v1/ranking", json=body, timeout=60)


def error_of(response: httpx.Response) -> str:
    envelope = ErrorEnvelope.model_validate(response.json())
    assert envelope.error.code == response.status_code
    return envelope.error.message


def claimed_tasks(fleet: Fleet) -> int:
    """Ranking tasks a worker has taken off a queue (each leaves its owner's key for a while)."""
    return sum(1 for _ in redis.Redis.from_url(fleet.redis_url).scan_iter(match="rerank:task:*:worker"))


def test_an_instruction_within_the_limits_is_scored(fleet):
    response = rank(fleet, QWEN3, ["photosynthesis", "stocks"], "x" * MAX_INSTRUCTION)
    assert response.status_code == 200, response.text
    assert len(RankingResponse.model_validate(response.json()).rankings) == 2


def test_an_instruction_over_its_limit_is_a_413_naming_the_setting(fleet):
    response = rank(fleet, QWEN3, ["photosynthesis"], "x" * (MAX_INSTRUCTION + 1))
    assert response.status_code == 413, response.text
    assert error_of(response) == (f"instruction has {MAX_INSTRUCTION + 1} characters; at most {MAX_INSTRUCTION} are "
                                  "accepted (RERANK_MAX_INSTRUCTION_CHARS)")  # fmt: skip
    client = grpcclient.InferenceServerClient(fleet.grpc)
    inputs = [grpcclient.InferInput("query", [1], "BYTES"), grpcclient.InferInput("passage", [1], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([b"which plant?"], dtype=object))
    inputs[1].set_data_from_numpy(np.array([b"photosynthesis"], dtype=object))
    with pytest.raises(grpcclient.InferenceServerException, match="RERANK_MAX_INSTRUCTION_CHARS"):
        client.infer(grpc_model_name(QWEN3), inputs, parameters={"instruction": "x" * (MAX_INSTRUCTION + 1)})


def test_an_instruction_counts_once_per_passage_against_the_request_limit(fleet):
    passages = ["p"] * 100  # 100 characters; with the instruction copied into each pair, 100 * 301 = 30,100
    response = rank(fleet, QWEN3, passages, "y" * MAX_INSTRUCTION)
    assert response.status_code == 413, response.text
    assert "its instruction counted once per passage" in error_of(response)
    assert "RERANK_MAX_REQUEST_CHARS" in error_of(response)
    assert rank(fleet, QWEN3, passages[:50], "y" * MAX_INSTRUCTION).status_code == 200  # 50 * 301 = 15,100


def test_workers_announce_whether_their_prompt_takes_an_instruction(fleet):
    client = redis.Redis.from_url(fleet.redis_url)
    for model, takes in ((QWEN3, True), (BERT, False)):
        info = client.get(worker_info_key(fleet.workers[model].extra["name"]))
        assert b'"takes_instruction": ' + (b"true" if takes else b"false") in info


def test_an_instruction_for_a_model_that_takes_none_is_refused_before_it_is_queued(fleet):
    assert rank(fleet, BERT, ["p"], None).status_code == 200
    before = claimed_tasks(fleet)
    for route, body in (("/v1/ranking", {"query": {"text": "q"}, "passages": [{"text": "p"}]}),
                        ("/v1/rerank", {"query": "q", "documents": ["p"]})):  # fmt: skip
        response = httpx.post(fleet.url + route, json={"model": BERT, "instruction": "Rank them", **body}, timeout=60)
        assert response.status_code == 400, response.text
        assert error_of(response).startswith("instruction:")
    assert claimed_tasks(fleet) == before, "the request went to a worker before it was refused"
