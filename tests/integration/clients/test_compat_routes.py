"""The compatibility routes over plain HTTP: auth on every route, Jina's body, and what each route refuses."""

from __future__ import annotations

import httpx
import pytest

from shared.compat_schemas import CohereRerankResponse, sigmoid
from shared.schemas import ErrorEnvelope, ModelList, RankingResponse
from tests.integration.clients.support import DOCUMENTS, QUERY, best_first, rank_v1


def nim_body(model: str, **extra) -> dict:
    return {"model": model, "query": {"text": QUERY}, "passages": [{"text": d} for d in DOCUMENTS], **extra}


def routes(model: str) -> list[tuple[str, str, dict | None]]:
    """(method, path, body) of every route a client may call, with a body that succeeds."""
    cohere = {"model": model, "query": QUERY, "documents": DOCUMENTS}
    return [
        ("GET", "/v1/models", None),
        ("POST", "/v1/ranking", nim_body(model, truncate="END")),
        ("POST", f"/v1/retrieval/{model.replace('.', '_')}/reranking", nim_body(model, truncate="END")),
        ("POST", "/v1/rerank", cohere),
        ("POST", "/v2/rerank", cohere),
    ]


def send(url: str, method: str, path: str, body: dict | None, authorization: str | None = None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return httpx.request(method, url + path, json=body, headers=headers, timeout=60)


def error_of(response: httpx.Response) -> dict:
    envelope = ErrorEnvelope.model_validate(response.json())
    assert envelope.error.code == response.status_code
    return envelope.error.model_dump()


def test_every_route_needs_the_key_when_one_is_set(keyed_stack):
    for method, path, body in routes(keyed_stack.model_id):
        for authorization in (None, "Bearer wrong", "Bearer **********", keyed_stack.api_key):
            response = send(keyed_stack.url, method, path, body, authorization)
            assert response.status_code == 401, (path, authorization, response.text)
            assert error_of(response)["type"] == "authentication_error"
            assert response.headers["www-authenticate"] == "Bearer"
        response = send(keyed_stack.url, method, path, body, f"Bearer {keyed_stack.api_key}")
        assert response.status_code == 200, (path, response.text)
    assert httpx.get(keyed_stack.url + "/v1/health/live").status_code == 200


@pytest.mark.parametrize("authorization", [None, "Bearer **********", "Bearer some-key", "Basic Zm9vOmJhcg==", "x"])
def test_without_a_key_configured_any_authorization_header_is_ignored(bert_stack, authorization):
    for method, path, body in routes(bert_stack.model_id):
        response = send(bert_stack.url, method, path, body, authorization)
        assert response.status_code == 200, (path, response.text)


def test_models_lists_id_and_root_for_nvidiarerank(keyed_stack):
    response = send(keyed_stack.url, "GET", "/v1/models", None, f"Bearer {keyed_stack.api_key}")
    models = ModelList.model_validate(response.json())
    assert [(m.id, m.root, m.object) for m in models.data] == [(keyed_stack.model_id, keyed_stack.model_id, "model")]


def test_jina_body_on_v1_rerank(bert_stack):
    body = {
        "model": bert_stack.model_id,
        "query": QUERY,
        "documents": [{"text": d} for d in DOCUMENTS],
        "top_n": 2,
        "return_documents": True,
    }
    response = httpx.post(bert_stack.url + "/v1/rerank", json=body, timeout=60)
    assert response.status_code == 200, response.text
    reply = CohereRerankResponse.model_validate(response.json())
    logits = rank_v1(bert_stack.url, bert_stack.model_id, QUERY, DOCUMENTS).logits
    assert [r.index for r in reply.results] == best_first(logits)[:2]
    assert [r.document.text for r in reply.results] == [DOCUMENTS[i] for i in best_first(logits)[:2]]
    expected = [sigmoid(logits[i]) for i in best_first(logits)[:2]]
    assert [r.relevance_score for r in reply.results] == pytest.approx(expected, abs=1e-5)


def test_max_tokens_per_doc_is_the_same_on_v1_and_v2(bert_stack):
    body = {"model": bert_stack.model_id, "query": QUERY, "documents": DOCUMENTS, "max_tokens_per_doc": 4}
    uncut = {**body, "max_tokens_per_doc": None}
    scores = []
    for path, payload in (("/v1/rerank", body), ("/v2/rerank", body), ("/v2/rerank", uncut)):
        results = httpx.post(bert_stack.url + path, json=payload, timeout=60).json()["results"]
        scores.append({r["index"]: r["relevance_score"] for r in results})
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)
    assert scores[1] != pytest.approx(scores[2], abs=1e-6)  # the cut changed what was scored


def test_retrieval_route_applies_top_k_and_checks_the_bodys_model(keyed_stack):
    auth = f"Bearer {keyed_stack.api_key}"
    path = f"/v1/retrieval/{keyed_stack.model_id.replace('.', '_')}/reranking"
    response = send(keyed_stack.url, "POST", path, nim_body(keyed_stack.model_id, truncate="END", top_k=2), auth)
    ranked = RankingResponse.model_validate(response.json())
    logits = rank_v1(keyed_stack.url, keyed_stack.model_id, QUERY, DOCUMENTS, keyed_stack.api_key).logits
    assert [r.index for r in ranked.rankings] == best_first(logits)[:2]
    assert [r.logit for r in ranked.rankings] == pytest.approx([logits[i] for i in best_first(logits)[:2]], abs=1e-4)

    other = send(keyed_stack.url, "POST", path, nim_body("acme/another-model", truncate="END"), auth)
    assert other.status_code == 400 and "acme/another-model" in error_of(other)["message"]
    strict = send(keyed_stack.url, "POST", path, nim_body(keyed_stack.model_id, stream=True), auth)
    assert strict.status_code == 422 and "stream" in error_of(strict)["message"]
    too_long = send(keyed_stack.url, "POST", path, nim_body(keyed_stack.model_id), auth)  # NONE by default
    assert too_long.status_code == 400 and error_of(too_long)["message"].startswith("passage 2:")
    unrelated = keyed_stack.model_id.replace(".", "-")  # acme/llama-3-2-...: not a spelling of the served id
    missing = send(keyed_stack.url, "POST", f"/v1/retrieval/{unrelated}/reranking", nim_body(unrelated), auth)
    assert missing.status_code == 404 and error_of(missing)["type"] == "not_found_error"


@pytest.mark.parametrize(
    "change, status",
    [
        ({"documents": []}, 422),
        ({"query": ""}, 422),
        ({"documents": [{"title": "no text"}]}, 422),
        ({"rank_fields": ["title"]}, 422),
        ({"top_n": 0}, 422),
        ({"documents": [f"document {i}" for i in range(513)]}, 413),
        ({"model": "no/such-model"}, 404),
    ],
)
def test_cohere_routes_refuse_with_the_envelope(bert_stack, change, status):
    body = {"model": bert_stack.model_id, "query": QUERY, "documents": DOCUMENTS, **change}
    for path in ("/v1/rerank", "/v2/rerank"):
        response = httpx.post(bert_stack.url + path, json=body, timeout=60)
        assert response.status_code == status, (path, response.text)
        assert "Traceback" not in error_of(response)["message"]


def test_cohere_routes_ignore_fields_they_do_not_know(bert_stack):
    body = {"model": bert_stack.model_id, "query": QUERY, "documents": DOCUMENTS[:2], "priority": 0,
            "relevant_spans": {"enabled": True}, "max_chunks_per_doc": 10, "rank_fields": ["text"]}  # fmt: skip
    for path in ("/v1/rerank", "/v2/rerank"):
        response = httpx.post(bert_stack.url + path, json=body, timeout=60)
        assert response.status_code == 200, response.text


def test_openapi_declares_the_routes_and_their_errors(bert_stack):
    spec = httpx.get(bert_stack.url + "/openapi.json").json()
    for path in ("/v1/retrieval/{model}/reranking", "/v1/rerank", "/v2/rerank"):
        responses = spec["paths"][path]["post"]["responses"]
        assert {"200", "401", "404", "422", "503"} <= responses.keys(), path
