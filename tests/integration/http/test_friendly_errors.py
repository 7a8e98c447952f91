"""What a careless client meets: a body without JSON's Content-Type is told so, validation errors name
positions as `passages[0]` in plain words, invalid UTF-8 is the 400 README promises, a trailing slash is
the same route, and an over-limit body counts under its route."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import tritonclient.grpc
import tritonclient.utils

from shared.schemas import ErrorEnvelope


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return ErrorEnvelope.model_validate(response.json()).error.message


def test_a_form_body_is_told_to_send_json(bert_stack):
    body = json.dumps({"model": bert_stack.model_id, "query": {"text": "q"}, "passages": [{"text": "p"}]})
    # what `curl -d` sends without -H
    answer = httpx.post(bert_stack.url + "/v1/ranking", content=body,
                        headers={"content-type": "application/x-www-form-urlencoded"}, timeout=30)  # fmt: skip
    assert "Content-Type: application/json" in _error(answer, 415)


def test_validation_messages_are_plain(bert_stack):
    answer = httpx.post(bert_stack.url + "/v1/ranking", json={"model": bert_stack.model_id, "query": {"text": "q"},
                                                             "passages": ["a bare string"], "colour": 1}, timeout=30)  # fmt: skip
    message = _error(answer, 422)
    assert "passages[0] must be an object" in message and "colour is not a known field" in message
    assert "instance of" not in message and "dictionary" not in message


def test_invalid_utf8_is_a_400(bert_stack):
    raw = b'{"model": "m", "query": {"text": "\xff\xfe"}, "passages": [{"text": "p"}]}'
    answer = httpx.post(bert_stack.url + "/v1/ranking", content=raw, headers={"content-type": "application/json"})
    assert "UTF-8" in _error(answer, 400)
    assert answer.json()["error"]["type"] == "validation_error"


def test_a_trailing_slash_is_the_same_route(bert_stack):
    body = {"model": bert_stack.model_id, "query": {"text": "q"}, "passages": [{"text": "p"}]}
    answer = httpx.post(bert_stack.url + "/v1/ranking/", json=body, timeout=30)
    assert answer.status_code == 200, answer.text


def test_long_client_values_are_not_echoed_whole(bert_stack):
    name = "m" * 100_000
    answer = httpx.post(bert_stack.url + "/v1/ranking", json={"model": name, "query": {"text": "q"},
                                                             "passages": [{"text": "p"}]}, timeout=30)  # fmt: skip
    assert len(_error(answer, 404)) < 200
    field = {"model": bert_stack.model_id, "query": {"text": "q"}, "passages": [{"text": "p"}], "f" * 100_000: 1}
    assert len(_error(httpx.post(bert_stack.url + "/v1/ranking", json=field, timeout=30), 422)) < 300
    assert len(_error(httpx.get(bert_stack.url + "/v1/ranking/jobs/" + "j" * 8_000, timeout=30), 404)) < 200
    client = tritonclient.grpc.InferenceServerClient(bert_stack.api.extra["grpc"])
    inputs = [tritonclient.grpc.InferInput(input_name, [1], "BYTES") for input_name in ("query", "passage")]
    for tensor in inputs:
        tensor.set_data_from_numpy(np.array(["q"], dtype=object))
    with pytest.raises(tritonclient.utils.InferenceServerException) as refused:
        client.infer("g" * 100_000, inputs)
    assert refused.value.status() == "StatusCode.NOT_FOUND" and len(refused.value.message()) < 300


def test_an_over_limit_body_counts_under_its_route(bert_stack):
    httpx.post(bert_stack.url + "/v1/ranking", content=b"x" * (9 * 1024 * 1024),
               headers={"content-type": "application/json"}, timeout=30)  # fmt: skip
    metrics = httpx.get(bert_stack.url + "/metrics", timeout=30).text
    assert 'route="/v1/ranking",status="413"' in metrics.replace('model="",', "")
