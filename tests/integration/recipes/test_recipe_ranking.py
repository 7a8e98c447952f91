"""Prompt recipes through the real fleet (Redis, a worker per model, one API): every family's logits equal the
contract's pair-by-pair transformers reference, with usage, NONE, END, Cohere, gRPC, the instruction and jobs."""

from __future__ import annotations

import json
import math
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from api.ranking.model_names import grpc_model_name
from shared.compat_schemas import CohereRerankResponse
from shared.job_schemas import Job
from shared.schemas import ErrorEnvelope, ModelList, RankingResponse
from tests.integration.recipes.conftest import GEMMA, NV, QWEN3

QUERY = "how do plants turn sunlight into energy"
PASSAGES = [
    "photosynthesis converts light energy into chemical energy stored in glucose",
    "the stock market closed higher on tuesday",
    "chlorophyll absorbs mostly blue and red light " * 80,  # over L = 512 with its prompt
    "",
    "Plants, algae & cyanobacteria — Ünïcödé — 光合作用",
]


def rank(fleet, model: str, passages, query=QUERY, route="/v1/ranking", **extra) -> httpx.Response:
    body = {"model": model, "query": {"text": query}, "passages": [{"text": p} for p in passages], **extra}
    return httpx.post(fleet.url + route, json=body, timeout=60)


def error_of(response: httpx.Response) -> str:
    envelope = ErrorEnvelope.model_validate(response.json())
    assert envelope.error.code == response.status_code
    return envelope.error.message


def test_logits_order_and_usage_equal_the_contract_s_reference(recipe_fleet, family):
    model, reference = family
    response = rank(recipe_fleet, model, PASSAGES, truncate="END")
    assert response.status_code == 200, response.text
    body = RankingResponse.model_validate(response.json())
    expected = reference.logits(QUERY, PASSAGES)
    assert sorted(r.index for r in body.rankings) == list(range(len(PASSAGES)))
    for ranking in body.rankings:
        assert ranking.logit == pytest.approx(expected[ranking.index], abs=1e-4)
    assert [(-r.logit, r.index) for r in body.rankings] == sorted((-r.logit, r.index) for r in body.rankings)
    assert len({round(r.logit, 4) for r in body.rankings}) == len(PASSAGES)
    tokens = sum(len(reference.encode(QUERY, p)) for p in PASSAGES)  # prompt and specials included
    assert body.usage.prompt_tokens == body.usage.total_tokens == tokens
    assert max(len(reference.encode(QUERY, p)) for p in PASSAGES) == 512


def test_none_names_the_passage_its_full_sequence_length_and_the_limit(recipe_fleet, family):
    model, reference = family
    response = rank(recipe_fleet, model, PASSAGES)
    assert response.status_code == 400
    full = len(reference.encode(QUERY, PASSAGES[2], truncate="NONE"))
    message = error_of(response)
    assert message.startswith("passage 2:") and f"is {full} tokens long" in message and "limit of 512 tokens" in message


def test_end_with_a_query_that_leaves_no_room_still_answers(recipe_fleet, family):
    model, _ = family
    response = rank(recipe_fleet, model, ["first", "second", "third"], query="an endless question " * 300, truncate="END")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["usage"]["prompt_tokens"] == 3 * 512
    assert [r["index"] for r in body["rankings"]] == [0, 1, 2]  # passages cut to nothing: equal logits, index order


def test_cohere_relevance_score_is_the_sigmoid_of_the_logit(recipe_fleet, family):
    model, _ = family
    logits = {r["index"]: r["logit"] for r in rank(recipe_fleet, model, PASSAGES, truncate="END").json()["rankings"]}
    body = {"model": model, "query": QUERY, "documents": PASSAGES}
    response = httpx.post(recipe_fleet.url + "/v2/rerank", json=body, timeout=60)
    assert response.status_code == 200, response.text
    results = CohereRerankResponse.model_validate(response.json()).results
    assert [r.index for r in results] == sorted(logits, key=lambda i: (-logits[i], i))
    for result in results:
        assert result.relevance_score == pytest.approx(1 / (1 + math.exp(-logits[result.index])), abs=1e-6)


def test_grpc_token_counts_and_logits(recipe_fleet, family):
    model, reference = family
    client = grpcclient.InferenceServerClient(recipe_fleet.grpc)
    inputs = [grpcclient.InferInput("query", [len(PASSAGES)], "BYTES"),
              grpcclient.InferInput("passage", [len(PASSAGES)], "BYTES")]  # fmt: skip
    inputs[0].set_data_from_numpy(np.array([QUERY] * len(PASSAGES), dtype=object))
    inputs[1].set_data_from_numpy(np.array(PASSAGES, dtype=object))
    result = client.infer(grpc_model_name(model), inputs, parameters={"truncate": "end"})
    assert result.as_numpy("token_count").tolist() == [len(reference.encode(QUERY, p)) for p in PASSAGES]
    expected = reference.logits(QUERY, PASSAGES)
    for index, logit in zip(result.as_numpy("index")[:, 0], result.as_numpy("logit")[:, 0]):
        assert float(logit) == pytest.approx(expected[index], abs=1e-4)
    assert client.is_model_ready(grpc_model_name(model))


def test_an_instruction_fills_the_prompt_on_every_route(recipe_fleet):
    reference = recipe_fleet.references[QWEN3]
    instruction = "Given a question about biology, find the passage that explains it"
    expected = reference.logits(QUERY, PASSAGES, instruction)
    assert expected != pytest.approx(reference.logits(QUERY, PASSAGES), abs=1e-3)
    ranked = rank(recipe_fleet, QWEN3, PASSAGES, truncate="END", instruction=instruction).json()["rankings"]
    assert {r["index"]: r["logit"] for r in ranked} == pytest.approx(dict(enumerate(expected)), abs=1e-4)
    retrieval = rank(recipe_fleet, QWEN3, PASSAGES, route=f"/v1/retrieval/{QWEN3}/reranking", truncate="END",
                     instruction=instruction)  # fmt: skip
    assert retrieval.json()["rankings"] == ranked
    cohere = httpx.post(recipe_fleet.url + "/v1/rerank", json={"model": QWEN3, "query": QUERY, "documents": PASSAGES,
                                                               "instruction": instruction}, timeout=60)  # fmt: skip
    assert [r["index"] for r in cohere.json()["results"]] == [r["index"] for r in ranked]
    client = grpcclient.InferenceServerClient(recipe_fleet.grpc)
    inputs = [grpcclient.InferInput(name, [1], "BYTES") for name in ("query", "passage")]
    inputs[0].set_data_from_numpy(np.array([QUERY], dtype=object))
    inputs[1].set_data_from_numpy(np.array(PASSAGES[:1], dtype=object))
    result = client.infer(grpc_model_name(QWEN3), inputs, parameters={"instruction": instruction})
    assert float(result.as_numpy("logit")[0, 0]) == pytest.approx(expected[0], abs=1e-4)


def test_an_instruction_for_a_model_whose_prompt_has_none_is_a_400_naming_the_field(recipe_fleet, bert_stack):
    for url, model in ((recipe_fleet.url, NV), (recipe_fleet.url, GEMMA), (bert_stack.url, bert_stack.model_id)):
        body = {"model": model, "query": {"text": QUERY}, "passages": [{"text": "p"}], "instruction": "Rank them"}
        response = httpx.post(url + "/v1/ranking", json=body, timeout=60)
        assert response.status_code == 400, response.text
        assert error_of(response).startswith("instruction:")


def test_models_and_readiness_list_every_configured_model(recipe_fleet):
    listed = ModelList.model_validate(httpx.get(recipe_fleet.url + "/v1/models").json())
    assert {QWEN3, GEMMA, NV} <= {card.id for card in listed.data}
    ready = httpx.get(recipe_fleet.url + "/v1/health/ready").json()
    assert ready["status"] == "ready" and ready["models"] == {QWEN3: 1, GEMMA: 1, NV: 1}
    one = httpx.get(recipe_fleet.url + "/v1/health/ready", params={"model": GEMMA}).json()
    assert (one["model"], one["workers"]) == (GEMMA, 1)
    assert httpx.get(recipe_fleet.url + "/v1/health/ready", params={"model": "no/such-model"}).status_code == 404


def test_a_batch_job_on_a_causal_model(recipe_fleet):
    reference = recipe_fleet.references[QWEN3]
    instruction = "Find the passage that explains photosynthesis"
    lines = [
        {"custom_id": "default", "query": {"text": QUERY}, "passages": [{"text": p} for p in PASSAGES[:2]]},
        {"custom_id": "instructed", "query": {"text": QUERY}, "passages": [{"text": p} for p in PASSAGES[:2]],
         "instruction": instruction},
        {"custom_id": "too-long", "query": {"text": QUERY}, "passages": [{"text": PASSAGES[2]}]},
    ]  # fmt: skip
    upload = "\n".join(json.dumps({"model": QWEN3, **line}) for line in lines)
    submitted = httpx.post(recipe_fleet.url + "/v1/ranking/jobs", content=upload,
                           headers={"content-type": "application/x-ndjson"}, timeout=60)  # fmt: skip
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    deadline = time.monotonic() + 120
    while (job := Job.model_validate(httpx.get(f"{recipe_fleet.url}/v1/ranking/jobs/{job_id}").json())).status not in (
        "succeeded", "failed"
    ):  # fmt: skip
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job.status == "succeeded" and job.progress.failed_requests == 1
    answer = httpx.get(f"{recipe_fleet.url}/v1/ranking/jobs/{job_id}/results").text
    results = [json.loads(line) for line in answer.splitlines()]
    by_id = {line["custom_id"]: line for line in results}
    for custom_id, given in (("default", None), ("instructed", instruction)):
        expected = reference.logits(QUERY, PASSAGES[:2], given)
        ranked = by_id[custom_id]["response"]["rankings"]
        assert {r["index"]: r["logit"] for r in ranked} == pytest.approx(dict(enumerate(expected)), abs=1e-4)
        assert by_id[custom_id]["response"]["usage"]["prompt_tokens"] == sum(
            len(reference.encode(QUERY, p, given)) for p in PASSAGES[:2]
        )
    assert by_id["too-long"]["error"]["message"].startswith("passage 0:")


def test_a_long_passage_is_scored_as_the_best_of_its_prompted_windows(recipe_fleet, family):
    model, reference = family
    long_passage = " ".join(f"leaf{i % 11} turns light into sugar" for i in range(200))
    response = rank(recipe_fleet, model, [PASSAGES[0], long_passage], truncate="END", max_chunks_per_passage=4)
    assert response.status_code == 200, response.text
    logits = {r["index"]: r["logit"] for r in response.json()["rankings"]}
    windows = reference.window_texts(QUERY, long_passage, max_windows=4)
    assert len(windows) == 4
    assert logits[1] == pytest.approx(max(reference.logits(QUERY, windows)), abs=1e-4)
    tokens = len(reference.encode(QUERY, PASSAGES[0])) + sum(len(reference.encode(QUERY, w)) for w in windows)
    assert response.json()["usage"]["prompt_tokens"] == tokens

