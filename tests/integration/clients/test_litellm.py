"""`litellm.rerank` / `litellm.arerank` with the nvidia_nim provider, on both of its routes, against real fleets.

`nvidia_nim/ranking/<model>` posts to /v1/ranking and applies top_n itself; `nvidia_nim/<model>` posts to
/v1/retrieval/<model>/reranking with `_` kept in the URL, `.` in the body and `top_k`, which only the
server applies (LiteLLM neither sorts nor trims that route's answer).
"""

from __future__ import annotations

import asyncio

import litellm
import pytest

from tests.integration.clients.support import DOCUMENTS, QUERY, best_first, rank_v1

ROUTES = {"ranking": "nvidia_nim/ranking/", "retrieval": "nvidia_nim/"}


def rerank(route: str, model: str, url: str, *, asynchronous: bool = False, api_key: str = "unused", **params):
    call = dict(model=ROUTES[route] + model, query=QUERY, documents=DOCUMENTS, api_base=url, api_key=api_key, **params)
    if asynchronous:
        return asyncio.run(litellm.arerank(**call))
    return litellm.rerank(**call)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("route", ROUTES)
def test_top_n_best_documents_with_the_logits_of_v1_ranking(bert_stack, route, asynchronous):
    expected = rank_v1(bert_stack.url, bert_stack.model_id, QUERY, DOCUMENTS)
    reply = rerank(route, bert_stack.model_id, bert_stack.url, asynchronous=asynchronous, top_n=3, truncate="END")
    assert [r["index"] for r in reply.results] == best_first(expected.logits)[:3]
    for result in reply.results:
        assert result["relevance_score"] == pytest.approx(expected.logits[result["index"]], abs=1e-4)
        assert result["document"]["text"] == DOCUMENTS[result["index"]]
    assert reply.meta["billed_units"]["total_tokens"] == expected.tokens  # every pair was scored, top_n or not


@pytest.mark.parametrize("route", ROUTES)
def test_without_truncate_an_over_long_document_is_refused_by_name(bert_stack, route):
    with pytest.raises(litellm.BadRequestError, match="passage 2"):
        rerank(route, bert_stack.model_id, bert_stack.url, top_n=2)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("spelling", ["dots", "underscores"])
@pytest.mark.parametrize("route", ROUTES)
def test_either_spelling_of_a_dotted_id_reaches_it_with_the_key(keyed_stack, route, spelling, asynchronous):
    model = keyed_stack.model_id if spelling == "dots" else keyed_stack.model_id.replace(".", "_")
    expected = rank_v1(keyed_stack.url, keyed_stack.model_id, QUERY, DOCUMENTS, keyed_stack.api_key)
    reply = rerank(
        route, model, keyed_stack.url, asynchronous=asynchronous, api_key=keyed_stack.api_key, top_n=2, truncate="END"
    )
    assert [r["index"] for r in reply.results] == best_first(expected.logits)[:2]
    for result in reply.results:
        assert result["relevance_score"] == pytest.approx(expected.logits[result["index"]], abs=1e-4)


@pytest.mark.parametrize("route", ROUTES)
def test_a_wrong_key_and_an_unrelated_name_are_refused(keyed_stack, route):
    with pytest.raises(litellm.AuthenticationError):
        rerank(route, keyed_stack.model_id, keyed_stack.url, api_key="wrong", truncate="END")
    unrelated = keyed_stack.model_id.replace(".", "-")  # acme/llama-3-2-...: not a spelling of the id
    with pytest.raises(litellm.NotFoundError):
        rerank(route, unrelated, keyed_stack.url, api_key=keyed_stack.api_key, truncate="END")
