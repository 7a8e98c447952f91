"""LangChain's `NVIDIARerank` pointed at the fleet: `base_url=.../v1`, nothing else changed.

It posts to {base_url}/ranking, keeps `rankings[:top_n]` without sorting them (so the server's order is
what the user gets), splits more than 32 documents into batches of 32 and merges them by score, and with
no model given takes the first model of GET {base_url}/models.
"""

from __future__ import annotations

import asyncio
import warnings

import pytest
from langchain_core.documents import Document
from langchain_nvidia_ai_endpoints import NVIDIARerank

from tests.integration.clients.support import DOCUMENTS, QUERY, best_first, rank_v1

MANY = [f"note {i}: " + " ".join(["plants", "light", "energy", "stock", "bread", "water"][i % 6 :]) * (1 + i % 5)
        for i in range(40)]  # fmt: skip


def documents(texts: list[str]) -> list[Document]:
    return [Document(page_content=text, metadata={"n": i}) for i, text in enumerate(texts)]


def compress(ranker: NVIDIARerank, texts: list[str], asynchronous: bool) -> list[Document]:
    if asynchronous:
        return list(asyncio.run(ranker.acompress_documents(documents(texts), QUERY)))
    return list(ranker.compress_documents(documents(texts), QUERY))


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_documents_come_back_in_the_servers_order_with_its_logits(bert_stack, asynchronous):
    ranker = NVIDIARerank(base_url=bert_stack.url + "/v1", model=bert_stack.model_id, truncate="END", top_n=4)
    expected = rank_v1(bert_stack.url, bert_stack.model_id, QUERY, DOCUMENTS).logits
    ranked = compress(ranker, DOCUMENTS, asynchronous)
    assert [doc.metadata["n"] for doc in ranked] == best_first(expected)[:4]
    for doc in ranked:
        assert doc.page_content == DOCUMENTS[doc.metadata["n"]]
        assert doc.metadata["relevance_score"] == pytest.approx(expected[doc.metadata["n"]], abs=1e-4)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_more_than_32_documents_are_batched_and_merged(bert_stack, asynchronous):
    ranker = NVIDIARerank(base_url=bert_stack.url + "/v1", model=bert_stack.model_id, truncate="END", top_n=len(MANY))
    expected = rank_v1(bert_stack.url, bert_stack.model_id, QUERY, MANY).logits
    ranked = compress(ranker, MANY, asynchronous)
    assert len(ranked) == len(MANY) and len(set(expected)) == len(MANY)  # distinct logits: one right order
    assert [doc.metadata["n"] for doc in ranked] == best_first(expected)
    for doc in ranked:
        assert doc.metadata["relevance_score"] == pytest.approx(expected[doc.metadata["n"]], abs=1e-4)
    if not asynchronous:  # the client's record of its last request: the second batch, documents 32..39
        assert len(ranker._client.last_inputs["json"]["passages"]) == len(MANY) - 32


def test_with_no_model_it_takes_the_one_listed_by_v1_models(keyed_stack):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ranker = NVIDIARerank(base_url=keyed_stack.url + "/v1", api_key=keyed_stack.api_key, truncate="END")
    assert ranker.model == keyed_stack.model_id
    assert any(keyed_stack.model_id in str(w.message) for w in caught)  # "Default model is set as: ..."
    expected = rank_v1(keyed_stack.url, keyed_stack.model_id, QUERY, DOCUMENTS, keyed_stack.api_key).logits
    ranked = ranker.compress_documents(documents(DOCUMENTS), QUERY)
    assert [doc.metadata["n"] for doc in ranked] == best_first(expected)


def test_with_no_key_it_sends_a_placeholder_the_open_fleet_ignores(bert_stack):
    ranker = NVIDIARerank(base_url=bert_stack.url + "/v1", model=bert_stack.model_id, truncate="END")
    assert len(ranker.compress_documents(documents(DOCUMENTS), QUERY)) == len(DOCUMENTS)
    assert ranker._client.last_inputs["headers"]["Authorization"] == "Bearer **********"


def test_a_keyed_fleet_refuses_a_wrong_key(keyed_stack):
    ranker = NVIDIARerank(base_url=keyed_stack.url + "/v1", model=keyed_stack.model_id, api_key="wrong")
    with pytest.raises(Exception, match=r"\[401\]"):  # the connector raises a bare Exception("[status] ...")
        ranker.compress_documents(documents(DOCUMENTS[:2]), QUERY)
