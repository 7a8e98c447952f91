"""The cohere SDK (`ClientV2` → /v2/rerank, `Client` → /v1/rerank, sync and async) pointed at the fleet.

The SDK builds its reply objects without validating them, so every test also parses the raw JSON into
the shape API.md section 3 documents (strict, no unknown fields) and into the SDK's own pydantic types.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import cohere
import pytest
from pydantic import BaseModel, ConfigDict, Field

from shared.compat_schemas import sigmoid
from tests.integration.clients.support import DOCUMENTS, QUERY, best_first, rank_v1


class _Documented(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DocumentedDocument(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    text: str


class DocumentedResult(_Documented):
    index: int = Field(ge=0)
    relevance_score: float = Field(ge=0, le=1)
    document: DocumentedDocument | None = None


class DocumentedVersion(_Documented):
    version: Literal["1", "2"]


class DocumentedBilledUnits(_Documented):
    search_units: int


class DocumentedMeta(_Documented):
    api_version: DocumentedVersion
    billed_units: DocumentedBilledUnits


class DocumentedReply(_Documented):
    id: str = Field(min_length=1)
    results: list[DocumentedResult]
    meta: DocumentedMeta


def call(version: str, url: str, asynchronous: bool, api_key: str = "unused", **params):
    """One rerank through the SDK's raw-response view: (the SDK's reply object, the raw JSON)."""
    if asynchronous:

        async def go():
            client = (cohere.AsyncClientV2 if version == "2" else cohere.AsyncClient)(
                api_key=api_key, base_url=url, max_retries=0
            )
            return await client.with_raw_response.rerank(**params)

        raw = asyncio.run(go())
    else:
        client = (cohere.ClientV2 if version == "2" else cohere.Client)(api_key=api_key, base_url=url, max_retries=0)
        raw = client.with_raw_response.rerank(**params)
    return raw.data, raw.response.json()


def parse(version: str, body: dict) -> DocumentedReply:
    reply = DocumentedReply.model_validate(body)
    assert reply.meta.api_version.version == version
    sdk_type = cohere.V2RerankResponse if version == "2" else cohere.RerankResponse
    sdk_type.model_validate(body)  # pydantic validation of the SDK's own type, which the SDK skips
    return reply


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_v2_sorted_top_n_sigmoid_of_the_v1_ranking_logits(bert_stack, asynchronous):
    logits = rank_v1(bert_stack.url, bert_stack.model_id, QUERY, DOCUMENTS).logits
    reply, body = call(
        "2", bert_stack.url, asynchronous, model=bert_stack.model_id, query=QUERY, documents=DOCUMENTS, top_n=3
    )
    parsed = parse("2", body)
    assert [r.index for r in reply.results] == [r.index for r in parsed.results] == best_first(logits)[:3]
    scores = [r.relevance_score for r in reply.results]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    for result in reply.results:
        assert result.relevance_score == pytest.approx(sigmoid(logits[result.index]), abs=1e-5)
    assert all("document" not in r for r in body["results"])


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_v1_returns_the_documents_asked_for(bert_stack, asynchronous):
    docs = [DOCUMENTS[0], {"text": DOCUMENTS[1], "source": "news"}, *DOCUMENTS[2:]]
    logits = rank_v1(bert_stack.url, bert_stack.model_id, QUERY, DOCUMENTS).logits
    reply, body = call(
        "1", bert_stack.url, asynchronous,
        model=bert_stack.model_id, query=QUERY, documents=docs, top_n=4, return_documents=True,
    )  # fmt: skip
    parsed = parse("1", body)
    assert [r.index for r in reply.results] == best_first(logits)[:4]
    for result, raw in zip(reply.results, body["results"]):
        assert result.document.text == DOCUMENTS[result.index]
        assert raw["document"] == (docs[result.index] if result.index == 1 else {"text": DOCUMENTS[result.index]})
        assert result.relevance_score == pytest.approx(sigmoid(logits[result.index]), abs=1e-5)
    assert [r.relevance_score for r in parsed.results] == [r.relevance_score for r in reply.results]


def test_v1_without_documents_asked_or_a_model_uses_the_served_model(bert_stack):
    reply, body = call("1", bert_stack.url, False, query=QUERY, documents=DOCUMENTS)
    parse("1", body)
    assert len(reply.results) == len(DOCUMENTS)
    assert all(r.document is None for r in reply.results) and all("document" not in r for r in body["results"])


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_v2_max_tokens_per_doc_scores_each_document_cut_to_that_many_tokens(bert_stack, asynchronous):
    keep = 6
    tokenizer = bert_stack.reference.tokenizer
    cut = []
    for text in DOCUMENTS:
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"][:keep]
        cut.append(tokenizer.decode(ids))
        assert tokenizer(cut[-1], add_special_tokens=False)["input_ids"] == ids  # the cut text re-tokenizes alike
    logits = rank_v1(bert_stack.url, bert_stack.model_id, QUERY, cut).logits
    reply, body = call(
        "2", bert_stack.url, asynchronous,
        model=bert_stack.model_id, query=QUERY, documents=DOCUMENTS, max_tokens_per_doc=keep,
    )  # fmt: skip
    parse("2", body)
    assert [r.index for r in reply.results] == best_first(logits)
    for result in reply.results:
        assert result.relevance_score == pytest.approx(sigmoid(logits[result.index]), abs=1e-5)


@pytest.mark.parametrize("version", ["1", "2"])
def test_an_over_long_query_and_documents_are_cut_never_refused(bert_stack, version):
    query = "an endless question " * 400  # alone over the limit: cut from its end, the documents emptied
    reply, body = call(version, bert_stack.url, False, model=bert_stack.model_id, query=query, documents=DOCUMENTS)
    parse(version, body)
    assert sorted(r.index for r in reply.results) == list(range(len(DOCUMENTS)))


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_keyed_fleet_takes_the_right_key_only_and_knows_its_models(keyed_stack, version):
    params = dict(query=QUERY, documents=DOCUMENTS[:2])
    _, body = call(version, keyed_stack.url, False, api_key=keyed_stack.api_key, model=keyed_stack.model_id, **params)
    assert len(parse(version, body).results) == 2
    with pytest.raises(cohere.UnauthorizedError):
        call(version, keyed_stack.url, False, api_key="wrong", model=keyed_stack.model_id, **params)
    with pytest.raises(cohere.NotFoundError):
        call(version, keyed_stack.url, False, api_key=keyed_stack.api_key, model="rerank-v3.5", **params)
