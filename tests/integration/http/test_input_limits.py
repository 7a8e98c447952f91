"""Hostile or oversized input: always the 4xx envelope, never a 5xx or a worker crash, on HTTP and gRPC."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import tritonclient.grpc
from tritonclient.utils import InferenceServerException

from api.ranking.model_names import grpc_model_name
from shared.schemas import ErrorEnvelope
from tests.processes import start_api

LIMITS = {"max_body_bytes": 4096, "max_passage_chars": 1000, "max_request_chars": 3000}


@pytest.fixture(scope="module")
def limited_api(log_dir, redis_server, bert_stack):
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model="unused", model_id=bert_stack.model_id,
                    **LIMITS)  # fmt: skip
    yield api
    api.stop()


def _body(model: str, *passages: str, query: str = "q") -> dict:
    return {"model": model, "query": {"text": query}, "passages": [{"text": p} for p in passages]}


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    envelope = ErrorEnvelope.model_validate(response.json())
    assert envelope.error.code == status
    return envelope.error.type


def test_bodies_over_the_limit_are_413_declared_or_streamed(limited_api, bert_stack):
    url = limited_api.extra["url"] + "/v1/ranking"
    big = json.dumps(_body(bert_stack.model_id, "x" * 5000)).encode()
    assert _error(httpx.post(url, content=big, headers={"content-type": "application/json"}), 413) == "request_too_large"

    def chunks():  # no Content-Length: the middleware counts what arrives
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    assert _error(httpx.post(url, content=chunks(), headers={"content-type": "application/json"}), 413) == (
        "request_too_large"
    )


def test_character_limits_per_passage_and_per_request(limited_api, bert_stack):
    url = limited_api.extra["url"] + "/v1/ranking"
    long_passage = httpx.post(url, json=_body(bert_stack.model_id, "p" * 1001))
    assert _error(long_passage, 413) == "request_too_large" and "passages[0]" in long_passage.json()["error"]["message"]
    assert _error(httpx.post(url, json=_body(bert_stack.model_id, "p", query="q" * 1001)), 413) == "request_too_large"
    too_many = httpx.post(url, json=_body(bert_stack.model_id, *["p" * 900] * 4))
    assert _error(too_many, 413) == "request_too_large" and "RERANK_MAX_REQUEST_CHARS" in too_many.text


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "M", "query": {"text": "q"}, "passages": [{"text": "\\ud800"}]}',  # a lone surrogate
        b'{"model": "M", "query": {"text": "\xff\xfe"}, "passages": [{"text": "p"}]}',  # not UTF-8
        b"[" * 2000 + b"]" * 2000,  # nesting far past the schema's
        b'{"model": "M", "query": {"text": "q"}, "passages": [{"text": "p"}',  # cut short
        b'{"model": "M", "query": {"text": "q"}, "passages": ' + b'[{"a": ' * 300 + b"1" + b"}]" * 300 + b"}",
    ],
    ids=["lone-surrogate", "invalid-utf8", "deep-nesting", "truncated", "nested-objects"],
)
def test_malformed_bodies_are_4xx_envelopes(limited_api, bert_stack, raw):
    raw = raw.replace(b'"M"', json.dumps(bert_stack.model_id).encode())
    for route in ("/v1/ranking", "/v1/rerank"):
        response = httpx.post(limited_api.extra["url"] + route, content=raw, headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, response.text
        ErrorEnvelope.model_validate(response.json())
    ok = httpx.post(limited_api.extra["url"] + "/v1/ranking", json=_body(bert_stack.model_id, "p"),
                    headers={"x-request-id": "after-the-bad-one"}, timeout=30)  # fmt: skip
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "after-the-bad-one"
    assert bert_stack.worker.process.poll() is None


@pytest.mark.parametrize(
    ("route", "raw"),
    [
        ("/v1/ranking", b'{"model": "M", "query": {"text": "\\ud800"}, "passages": [{"text": "p"}]}'),
        ("/v1/ranking", b'{"model": "M", "query": {"text": "q"}, "passages": [{"text": "p\\udc00"}]}'),
        ("/v1/rerank", b'{"model": "M", "query": "\\ud800", "documents": ["p"]}'),
        ("/v1/rerank", b'{"model": "M", "query": "q", "documents": [{"text": "\\udfff"}]}'),
    ],
    ids=["ranking-query", "ranking-passage", "cohere-query", "cohere-document"],
)
def test_a_lone_surrogate_is_400_wherever_it_is(limited_api, bert_stack, route, raw):
    """README: text that is not valid Unicode is 400, the field named, on every route."""
    raw = raw.replace(b'"M"', json.dumps(bert_stack.model_id).encode())
    response = httpx.post(limited_api.extra["url"] + route, content=raw, headers={"content-type": "application/json"})
    assert _error(response, 400) == "validation_error"
    assert "not valid Unicode" in response.json()["error"]["message"]


def test_a_body_nested_too_deeply_is_told_so(limited_api, bert_stack):
    for route in ("/v1/ranking", "/v1/rerank"):
        response = httpx.post(limited_api.extra["url"] + route, content=b"[" * 2000 + b"]" * 2000,
                              headers={"content-type": "application/json"})  # fmt: skip
        assert _error(response, 400) == "validation_error"
        assert "nests" in response.json()["error"]["message"], response.text
        assert "UTF-8" not in response.json()["error"]["message"]


def test_job_uploads_keep_their_own_limit(limited_api, bert_stack):
    """An NDJSON upload larger than RERANK_MAX_BODY_BYTES is still a job (RERANK_JOB_MAX_UPLOAD_BYTES applies)."""
    line = json.dumps(_body(bert_stack.model_id, "a passage of a batch job"))
    upload = ("\n".join([line] * 200) + "\n").encode()
    assert len(upload) > LIMITS["max_body_bytes"]
    response = httpx.post(limited_api.extra["url"] + "/v1/ranking/jobs", params={"model": bert_stack.model_id},
                          content=upload, headers={"content-type": "application/x-ndjson"}, timeout=30)  # fmt: skip
    assert response.status_code == 202, response.text


def _infer(address: str, model: str, query: str, passage: str) -> InferenceServerException | None:
    client = tritonclient.grpc.InferenceServerClient(address)
    inputs = [tritonclient.grpc.InferInput(name, [1], "BYTES") for name in ("query", "passage")]
    inputs[0].set_data_from_numpy(np.array([query.encode()], dtype=object))
    inputs[1].set_data_from_numpy(np.array([passage.encode()], dtype=object))
    try:
        client.infer(model, inputs)
    except InferenceServerException as exc:
        return exc
    finally:
        client.close()
    return None


def test_grpc_has_the_same_limits(limited_api, bert_stack):
    address, model = limited_api.extra["grpc"], grpc_model_name(bert_stack.model_id)
    oversized = _infer(address, model, "q", "p" * 5000)  # a message over RERANK_MAX_BODY_BYTES
    assert oversized is not None and oversized.status() == "StatusCode.RESOURCE_EXHAUSTED"
    long_passage = _infer(address, model, "q", "p" * 1001)
    assert long_passage is not None and long_passage.status() == "StatusCode.INVALID_ARGUMENT"
    assert "RERANK_MAX_PASSAGE_CHARS" in long_passage.message()
    assert _infer(address, model, "q", "p") is None
