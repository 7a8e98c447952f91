"""Long passages scored as the best of their windows (API.md section 6), through Redis and a real worker."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from api.ranking.model_names import grpc_model_name
from shared.compat_schemas import sigmoid
from shared.schemas import ErrorEnvelope, RankingResponse
from tests.processes import start_api, start_worker

QUERY = "where does the river meet the sea"
SHORT = "the river meets the sea at the delta"
# about 1,300 tokens of varied words: several windows at BERT's 512 and many at XLM-R's 128
LONG = " ".join(f"harbour{i % 17} river bank {'delta sea' if i % 9 == 0 else 'stone bridge'}" for i in range(220))


def rank(stack, passages, **extra) -> httpx.Response:
    body = {"model": stack.model_id, "query": {"text": QUERY}, "passages": [{"text": p} for p in passages], **extra}
    return httpx.post(stack.url + "/v1/ranking", json=body, timeout=60)


def logits_by_index(response: httpx.Response) -> dict[int, float]:
    assert response.status_code == 200, response.text
    return {r.index: r.logit for r in RankingResponse.model_validate(response.json()).rankings}


def expected(stack, passage: str, windows: int) -> tuple[float, int]:
    """The best window's logit and all windows' tokens, from plain transformers (tests/reference.py)."""
    if passage == SHORT:
        return stack.reference.logits(QUERY, [SHORT])[0], stack.reference.token_count(QUERY, SHORT)
    return stack.reference.best_window_logit(QUERY, passage, max_windows=windows)


@pytest.mark.parametrize("windows", [4, 16])
def test_a_long_passage_gets_the_best_of_its_windows_logits(stack, windows):
    response = rank(stack, [SHORT, LONG], truncate="END", max_chunks_per_passage=windows)
    got = logits_by_index(response)
    (short_logit, short_tokens), (long_logit, long_tokens) = (expected(stack, p, windows) for p in (SHORT, LONG))
    assert got[0] == pytest.approx(short_logit, abs=1e-4)
    assert got[1] == pytest.approx(long_logit, abs=1e-4)
    assert response.json()["usage"]["prompt_tokens"] == short_tokens + long_tokens


def test_one_window_is_today_s_behaviour(stack):
    plain = rank(stack, [SHORT, LONG], truncate="END")
    one = rank(stack, [SHORT, LONG], truncate="END", max_chunks_per_passage=1)
    assert one.json() == plain.json()
    assert logits_by_index(plain)[1] == pytest.approx(stack.reference.logits(QUERY, [LONG])[0], abs=1e-4)


def test_none_refuses_a_passage_that_needs_more_windows_naming_it(bert_stack):
    response = rank(bert_stack, [SHORT, LONG], truncate="NONE", max_chunks_per_passage=2)
    assert response.status_code == 400
    message = ErrorEnvelope.model_validate(response.json()).error.message
    assert message.startswith("passage 1: it needs") and "max_chunks_per_passage=2" in message
    assert rank(bert_stack, [SHORT, LONG], truncate="NONE", max_chunks_per_passage=16).status_code == 200


@pytest.mark.parametrize("value", [0, -3, 17, 2.5, "4", True])
def test_a_bad_number_of_windows_is_a_422_naming_the_field(bert_stack, value):
    response = rank(bert_stack, [SHORT], max_chunks_per_passage=value)
    assert response.status_code == 422
    message = ErrorEnvelope.model_validate(response.json()).error.message
    assert message.startswith("max_chunks_per_passage")
    if value == 17:
        assert "at most 16" in message and "RERANK_MAX_CHUNKS_PER_PASSAGE" in message


def test_cohere_max_chunks_per_doc_scores_the_best_window(bert_stack):
    body = {"model": bert_stack.model_id, "query": QUERY, "documents": [SHORT, LONG], "max_chunks_per_doc": 4}
    response = httpx.post(bert_stack.url + "/v2/rerank", json=body, timeout=60)
    assert response.status_code == 200, response.text
    scores = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
    assert scores[1] == pytest.approx(sigmoid(expected(bert_stack, LONG, 4)[0]), abs=1e-4)
    too_many = httpx.post(bert_stack.url + "/v2/rerank", json={**body, "max_chunks_per_doc": 99}, timeout=60)
    assert too_many.status_code == 422 and too_many.json()["error"]["message"].startswith("max_chunks_per_doc must be")


def test_grpc_token_counts_sum_each_passage_s_windows(bert_stack):
    client = grpcclient.InferenceServerClient(bert_stack.api.extra["grpc"])
    inputs = [grpcclient.InferInput("query", [2], "BYTES"), grpcclient.InferInput("passage", [2], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([QUERY] * 2, dtype=object))
    inputs[1].set_data_from_numpy(np.array([SHORT, LONG], dtype=object))
    result = client.infer(grpc_model_name(bert_stack.model_id), inputs,
                          parameters={"truncate": "end", "max_chunks_per_passage": 4})  # fmt: skip
    long_logit, long_tokens = expected(bert_stack, LONG, 4)
    assert result.as_numpy("token_count").tolist() == [expected(bert_stack, SHORT, 1)[1], long_tokens]
    by_index = dict(zip(result.as_numpy("index")[:, 0].tolist(), result.as_numpy("logit")[:, 0].tolist()))
    assert by_index[1] == pytest.approx(long_logit, abs=1e-4)


def test_a_batch_job_scores_long_passages_as_windows(bert_stack):
    lines = [{"custom_id": "long", "query": {"text": QUERY}, "passages": [{"text": SHORT}, {"text": LONG}],
              "truncate": "END", "max_chunks_per_passage": 4},
             {"custom_id": "refused", "query": {"text": QUERY}, "passages": [{"text": LONG}], "truncate": "NONE",
              "max_chunks_per_passage": 2}]  # fmt: skip
    job = httpx.post(bert_stack.url + "/v1/ranking/jobs", json={"model": bert_stack.model_id, "requests": lines},
                     timeout=60).json()  # fmt: skip
    deadline = time.monotonic() + 120
    while httpx.get(f"{bert_stack.url}/v1/ranking/jobs/{job['id']}", timeout=10).json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    results = httpx.get(f"{bert_stack.url}/v1/ranking/jobs/{job['id']}/results", timeout=30).text.splitlines()
    long_line, refused = (json.loads(line) for line in results)
    logits = {r["index"]: r["logit"] for r in long_line["response"]["rankings"]}
    assert logits[1] == pytest.approx(expected(bert_stack, LONG, 4)[0], abs=1e-4)
    assert refused["error"]["type"] == "validation_error" and "passage 0: it needs" in refused["error"]["message"]


def test_more_windows_than_a_worker_scores_per_request_is_a_413(log_dir, redis_server, bert_model_dir):
    model_id = "few-windows"
    worker = start_worker(log_dir, redis_url=redis_server.extra["url"], model=bert_model_dir, model_id=model_id,
                          max_windows_per_request=3)  # fmt: skip
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model=bert_model_dir, model_id=model_id)
    try:
        body = {"model": model_id, "query": {"text": QUERY}, "passages": [{"text": f"{LONG} {LONG}"}], "truncate": "END"}
        response = httpx.post(api.extra["url"] + "/v1/ranking", json={**body, "max_chunks_per_passage": 16}, timeout=60)
        assert response.status_code == 413
        assert "RERANK_MAX_WINDOWS_PER_REQUEST" in response.json()["error"]["message"]
        allowed = httpx.post(api.extra["url"] + "/v1/ranking", json={**body, "max_chunks_per_passage": 3}, timeout=60)
        assert allowed.status_code == 200
    finally:
        api.stop()
        worker.stop()
