"""POST /v1/ranking and friends over real HTTP, through Redis, to a real worker process."""

from __future__ import annotations

import asyncio
import random
import httpx
import pytest

from shared.schemas import ErrorEnvelope, ModelList, RankingResponse
from tests.processes import worker_report

QUERY = "how do plants turn sunlight into energy"
PASSAGES = [
    "photosynthesis converts light energy into chemical energy stored in glucose",
    "the stock market closed higher on tuesday",
    "chlorophyll absorbs mostly blue and red light " * 60,  # long: cut under END
    "",
    "Plants, algae & cyanobacteria — Ünïcödé — 光合作用",
]


def rank(stack, passages, query=QUERY, **extra) -> httpx.Response:
    body = {"model": stack.model_id, "query": {"text": query}, "passages": [{"text": p} for p in passages], **extra}
    return httpx.post(stack.url + "/v1/ranking", json=body, timeout=60)


def error_of(response: httpx.Response) -> dict:
    envelope = ErrorEnvelope.model_validate(response.json())
    assert envelope.error.code == response.status_code
    return envelope.error.model_dump()


def test_logits_order_and_usage_match_a_transformers_forward(stack):
    response = rank(stack, PASSAGES, truncate="END")
    assert response.status_code == 200, response.text
    body = RankingResponse.model_validate(response.json())
    expected = stack.reference.logits(QUERY, PASSAGES)
    assert sorted(r.index for r in body.rankings) == list(range(len(PASSAGES)))
    for ranking in body.rankings:
        assert ranking.logit == pytest.approx(expected[ranking.index], abs=1e-4)
    keys = [(-r.logit, r.index) for r in body.rankings]
    assert keys == sorted(keys)
    tokens = sum(stack.reference.token_count(QUERY, p) for p in PASSAGES)
    assert body.usage.prompt_tokens == body.usage.total_tokens == tokens


def test_equal_logits_are_ordered_by_index(stack):
    response = rank(stack, ["same passage", "other", "same passage", "same passage"])
    indices = [r["index"] for r in response.json()["rankings"]]
    same = [i for i in indices if i != 1]
    assert same == [0, 2, 3]


def test_none_is_the_default_and_names_the_over_long_passage(stack):
    limit = stack.reference.max_length
    response = rank(stack, PASSAGES)
    assert response.status_code == 400
    error = error_of(response)
    full = len(stack.reference.tokenizer(QUERY, PASSAGES[2])["input_ids"])
    assert error["type"] == "validation_error"
    assert error["message"].startswith("passage 2:")
    assert f"{full} tokens" in error["message"] and str(limit) in error["message"]
    assert rank(stack, PASSAGES, truncate="none").status_code == 400


def test_end_cuts_an_over_long_query_and_still_answers(stack):
    limit = stack.reference.max_length
    response = rank(stack, ["first", "second", "third"], query="an endless question " * 300, truncate="end")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["usage"]["prompt_tokens"] == 3 * limit
    assert [r["index"] for r in body["rankings"]] == [0, 1, 2]  # identical inputs: equal logits, index order


def test_top_n_and_top_k_keep_the_best(stack):
    full = rank(stack, PASSAGES, truncate="END").json()["rankings"]
    assert rank(stack, PASSAGES, truncate="END", top_n=2).json()["rankings"] == full[:2]
    assert rank(stack, PASSAGES, truncate="END", top_k=3).json()["rankings"] == full[:3]


def test_512_passages_are_accepted_and_513_refused(bert_stack):
    passages = [f"passage number {i}" for i in range(513)]
    accepted = rank(bert_stack, passages[:512])
    assert accepted.status_code == 200
    assert len(accepted.json()["rankings"]) == 512
    refused = rank(bert_stack, passages)
    assert refused.status_code == 413
    assert "512" in error_of(refused)["message"]


def test_unknown_model_is_404(bert_stack):
    body = {"model": "no/such-model", "query": {"text": "q"}, "passages": [{"text": "p"}]}
    response = httpx.post(bert_stack.url + "/v1/ranking", json=body)
    assert response.status_code == 404
    assert "no/such-model" in error_of(response)["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"model": "acme/tiny-bert-reranker"}',
        b'{"model": "acme/tiny-bert-reranker", "query": {"text": "q"}, "passages": []}',
        b'{"model": "acme/tiny-bert-reranker", "query": {"text": ""}, "passages": [{"text": "p"}]}',
        b'{"model": "acme/tiny-bert-reranker", "query": "q", "passages": [{"text": "p"}]}',
        b'{"model": "acme/tiny-bert-reranker", "query": {"text": "q"}, "passages": [{"text": "p"}], "stream": true}',
        b'{"model": "acme/tiny-bert-reranker", "query": {"text": "q"}, "passages": [{"text": "p"}], "truncate": "MIDDLE"}',
        b'{"model": "acme/tiny-bert-reranker", "query": {"text": "q"}, "passages": [{"text": 5}]}',
    ],
)
def test_malformed_bodies_get_a_4xx_envelope(bert_stack, body):
    response = httpx.post(
        bert_stack.url + "/v1/ranking", content=body, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500
    error = error_of(response)
    assert "Traceback" not in error["message"]


def test_unknown_fields_are_named_in_the_error(bert_stack):
    body = {"model": bert_stack.model_id, "query": {"text": "q"}, "passages": [{"text": "p"}], "stream": True}
    response = httpx.post(bert_stack.url + "/v1/ranking", json=body)
    assert response.status_code == 422
    assert "stream" in error_of(response)["message"]


def test_models_lists_the_served_model_in_the_nim_shape(bert_stack):
    response = httpx.get(bert_stack.url + "/v1/models")
    models = ModelList.model_validate(response.json())
    ids = [m.id for m in models.data]
    assert bert_stack.model_id in ids
    card = models.data[ids.index(bert_stack.model_id)]
    assert card.root == bert_stack.model_id and card.object == "model"


def test_health_routes(bert_stack):
    assert httpx.get(bert_stack.url + "/v1/health/live").status_code == 200
    ready = httpx.get(bert_stack.url + "/v1/health/ready")
    assert ready.status_code == 200
    assert ready.json()["workers"] >= 1


def test_32_concurrent_requests_are_all_correct_and_share_forward_passes(bert_stack):
    rng = random.Random(7)
    words = "energy light plant cell water root leaf sun carbon oxygen sugar green".split()
    requests = []
    for i in range(32):
        query = f"question {i}: " + " ".join(rng.choices(words, k=5))
        passages = [" ".join(rng.choices(words, k=rng.randint(3, 60))) for _ in range(rng.randint(4, 24))]
        requests.append((query, passages))
    before = worker_report(bert_stack.redis_url, bert_stack.worker.extra["name"])["batch_stats"]

    async def send_all():
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        bert_stack.url + "/v1/ranking",
                        json={"model": bert_stack.model_id, "query": {"text": q}, "passages": [{"text": p} for p in ps]},
                    )
                    for q, ps in requests
                )
            )

    responses = asyncio.run(send_all())
    for (query, passages), response in zip(requests, responses):
        assert response.status_code == 200, response.text
        expected = bert_stack.reference.logits(query, passages)
        got = {r["index"]: r["logit"] for r in response.json()["rankings"]}
        assert got == pytest.approx(dict(enumerate(expected)), abs=1e-4)

    after = worker_report(bert_stack.redis_url, bert_stack.worker.extra["name"])["batch_stats"]
    pairs = sum(len(ps) for _, ps in requests)
    assert after["pairs"] - before["pairs"] == pairs
    assert after["shared_batches"] > before["shared_batches"]
    assert after["max_requests_in_batch"] >= 2
