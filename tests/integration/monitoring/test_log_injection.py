"""Log lines cannot be forged by clients: control characters in what a client sends are escaped in text logs,
and request ids (HTTP X-Request-ID, gRPC `id`) are at most 128 characters of [A-Za-z0-9._-]."""

from __future__ import annotations

import re
import time

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc
from tritonclient.utils import InferenceServerException

from api.ranking.model_names import grpc_model_name
from tests.processes import start_api

FORGED = "2026-01-01 00:00:00,000 CRITICAL worker: forged"


@pytest.fixture(scope="module")
def keyed_text_api(log_dir, redis_server, bert_stack):
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model="unused", model_id=bert_stack.model_id,
                    api_key="log-injection-key")  # fmt: skip
    yield api
    api.stop()


def _forged_lines(*logs: str) -> list[str]:
    return [line for log in logs for line in log.splitlines() if line.startswith(FORGED)]


def test_a_newline_in_a_path_does_not_forge_a_line_even_on_a_401(keyed_text_api):
    encoded = FORGED.replace(" ", "%20").replace(",", "%2C").replace(":", "%3A")
    response = httpx.get(keyed_text_api.extra["url"] + "/v1/models%0A" + encoded, timeout=10)
    assert response.status_code == 401
    time.sleep(0.5)
    log = keyed_text_api.log()
    assert "forged" in log  # the line was logged, with its newline escaped
    assert not _forged_lines(log)


def test_an_http_request_id_outside_the_rule_is_replaced(bert_stack):
    for bad in ("x" * 129, "spaces are not allowed", "semi;colon"):
        response = httpx.get(bert_stack.url + "/v1/health/live", headers={"x-request-id": bad}, timeout=10)
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), bad
    good = "trace-1.a_B"
    assert httpx.get(bert_stack.url + "/v1/health/live", headers={"x-request-id": good}).headers["x-request-id"] == good


def _infer(address: str, model: str, request_id: str) -> InferenceServerException | tritonclient.grpc.InferResult:
    client = tritonclient.grpc.InferenceServerClient(address)
    inputs = [tritonclient.grpc.InferInput(name, [1], "BYTES") for name in ("query", "passage")]
    inputs[0].set_data_from_numpy(np.array([b"q"], dtype=object))
    inputs[1].set_data_from_numpy(np.array([b"p"], dtype=object))
    try:
        return client.infer(model, inputs, request_id=request_id, client_timeout=30)
    except InferenceServerException as exc:
        return exc
    finally:
        client.close()


def test_grpc_request_ids_follow_the_http_rule(bert_stack):
    address, model = bert_stack.api.extra["grpc"], grpc_model_name(bert_stack.model_id)
    for bad in (f"x\n{FORGED}", "i" * (4 * 1024 * 1024)):
        refused = _infer(address, model, bad)
        assert isinstance(refused, InferenceServerException), bad[:30]
        assert refused.status() == str(grpc.StatusCode.INVALID_ARGUMENT), refused.message()[:200]
        assert len(refused.message()) < 300
    answered = _infer(address, model, "trace-2.a_B")
    assert not isinstance(answered, InferenceServerException), answered
    assert answered.get_response().id == "trace-2.a_B"
    time.sleep(1)
    assert not _forged_lines(bert_stack.api.log(), bert_stack.worker.log())


@pytest.fixture(scope="module")
def keyed_json_api(log_dir, redis_server, bert_stack):
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model="unused", model_id=bert_stack.model_id,
                    api_key="log-injection-key", log_format="json")  # fmt: skip
    yield api
    api.stop()


@pytest.mark.parametrize("separator", ["%E2%80%A8", "%E2%80%A9", "%C2%85"], ids=["U+2028", "U+2029", "U+0085"])
def test_a_unicode_line_break_in_a_path_does_not_split_a_json_log_line(keyed_json_api, separator):
    """Readers that split on Unicode line breaks (Python's splitlines, JavaScript) see one line per record."""
    marker = f"forged-{separator[-2:]}"
    response = httpx.get(f"{keyed_json_api.extra['url']}/v1/models{separator}{marker}", timeout=10)
    assert response.status_code == 401
    time.sleep(0.5)
    lines = [line for line in keyed_json_api.log().splitlines() if marker in line]
    assert lines, "the request was not logged"
    assert all(line.startswith("{") for line in lines), lines  # no line begins inside a record
