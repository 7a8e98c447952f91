"""The Cohere dialect's schemas: what is accepted, and how a worker's logits become a Cohere reply."""

import math
import uuid

import pytest
from pydantic import ValidationError

from shared.compat_schemas import CohereRerankRequest, CohereRerankResponse, build_cohere_response, sigmoid
from shared.schemas import RankResult


def request(**fields) -> CohereRerankRequest:
    return CohereRerankRequest.model_validate({"query": "q", "documents": ["a", "b", "c"], **fields})


def test_sigmoid_is_in_0_1_and_monotone_for_any_logit():
    assert sigmoid(0.0) == 0.5
    assert sigmoid(2.0) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert sigmoid(-2.0) == pytest.approx(1 - sigmoid(2.0))
    assert sigmoid(1e4) == 1.0 and sigmoid(-1e4) == 0.0  # no OverflowError
    values = [sigmoid(x) for x in (-50, -3, -0.1, 0.1, 3, 50)]
    assert values == sorted(values) and all(0 <= v <= 1 for v in values)


def test_results_are_sorted_like_v1_ranking_and_top_n_applies():
    result = RankResult(logits=[0.5, 2.0, 0.5], token_counts=[3, 3, 3])
    reply = build_cohere_response(result, request(top_n=2), "2")
    assert [r.index for r in reply.results] == [1, 0]  # equal logits: lower index first
    assert [r.relevance_score for r in reply.results] == [sigmoid(2.0), sigmoid(0.5)]
    assert uuid.UUID(reply.id)
    data = reply.model_dump(mode="json")
    assert data["meta"] == {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}
    assert all("document" not in r for r in data["results"])  # absent, not null


def test_documents_come_back_when_asked_with_their_other_fields():
    body = request(documents=["plain", {"text": "object", "title": "kept"}], return_documents=True)
    reply = build_cohere_response(RankResult(logits=[0.0, 1.0], token_counts=[1, 1]), body, "1")
    data = reply.model_dump(mode="json")
    assert [r["document"] for r in data["results"]] == [{"text": "object", "title": "kept"}, {"text": "plain"}]
    assert CohereRerankResponse.model_validate(data).results[0].document.text == "object"
    assert body.texts() == ["plain", "object"]


def test_unknown_fields_are_ignored_and_known_ones_checked():
    body = request(model="m", priority=1, relevant_spans={"enabled": True}, max_chunks_per_doc=10)
    assert body.model == "m" and body.model_dump().keys().isdisjoint({"priority", "relevant_spans"})
    assert request(rank_fields=["text"]).rank_fields == ["text"]


@pytest.mark.parametrize(
    "change",
    [
        {"query": ""},
        {"documents": []},
        {"documents": [5]},
        {"documents": [{"title": "no text"}]},
        {"top_n": 0},
        {"max_tokens_per_doc": 0},
        {"rank_fields": ["title", "text"]},
        {"return_documents": "sometimes"},
    ],
)
def test_bad_bodies_are_refused(change):
    with pytest.raises(ValidationError):
        request(**change)
