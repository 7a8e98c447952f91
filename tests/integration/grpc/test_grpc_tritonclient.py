"""The KServe V2 gRPC front door with the real tritonclient (sync and aio), against a real worker."""

from __future__ import annotations

import asyncio
import time

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from api.ranking.model_names import grpc_model_name
from tests.processes import silent_worker, start_api

QUERY = "which way should i go?"
PASSAGES = [
    "two roads diverged in a yellow wood, and sorry i could not travel both",
    "then took the other, as just as fair, and having perhaps the better claim",
    "and both that morning equally lay in leaves no step had trodden black " * 50,  # over the limit
    "i took the one less traveled by, and that has made all the difference.",
]


def nim_inputs(client_module, query, passages, column=False):
    """The NIM documentation's pattern: the query repeated once per passage, BYTES tensors."""
    shape = [len(passages), 1] if column else [len(passages)]
    query_input = client_module.InferInput("query", shape, "BYTES")
    passage_input = client_module.InferInput("passage", shape, "BYTES")
    query_input.set_data_from_numpy(np.array([query] * len(passages), dtype=object).reshape(shape))
    passage_input.set_data_from_numpy(np.array(passages, dtype=object).reshape(shape))
    return [query_input, passage_input]


def outputs(client_module):
    return [client_module.InferRequestedOutput(name) for name in ("index", "logit", "token_count")]


def http_ranking(stack, passages, truncate):
    body = {"model": stack.model_id, "query": {"text": QUERY}, "passages": [{"text": p} for p in passages],
            "truncate": truncate}  # fmt: skip
    response = httpx.post(stack.url + "/v1/ranking", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def grpc_name(stack):
    return grpc_model_name(stack.model_id)


def test_nim_client_pattern_with_the_aio_client_matches_http(stack, grpc_name):
    passages = PASSAGES[:2] + PASSAGES[3:]

    async def call():
        async with aioclient.InferenceServerClient(stack.api.extra["grpc"]) as client:
            return await client.infer(
                grpc_name, nim_inputs(aioclient, QUERY, passages), outputs=outputs(aioclient),
                parameters={"truncate": "none"},
            )  # fmt: skip

    result = asyncio.run(call())
    index, logit, token_count = (result.as_numpy(n) for n in ("index", "logit", "token_count"))
    assert index.shape == (3, 1) and index.dtype == np.int32
    assert logit.shape == (3, 1) and logit.dtype == np.float32
    assert token_count.shape == (3,) and token_count.dtype == np.int32
    http = http_ranking(stack, passages, "NONE")
    assert index[:, 0].tolist() == [r["index"] for r in http["rankings"]]
    assert logit[:, 0].tolist() == pytest.approx([r["logit"] for r in http["rankings"]], abs=1e-5)
    assert int(token_count.sum()) == http["usage"]["prompt_tokens"]
    assert token_count.tolist() == [stack.reference.token_count(QUERY, p) for p in passages]


def test_sync_client_with_b_by_1_shape_and_end_truncation(stack, grpc_name):
    client = grpcclient.InferenceServerClient(stack.api.extra["grpc"])
    result = client.infer(
        grpc_name, nim_inputs(grpcclient, QUERY, PASSAGES, column=True), outputs=outputs(grpcclient),
        parameters={"truncate": "END"},
    )  # fmt: skip
    http = http_ranking(stack, PASSAGES, "END")
    assert result.as_numpy("index")[:, 0].tolist() == [r["index"] for r in http["rankings"]]
    assert result.as_numpy("logit")[:, 0].tolist() == pytest.approx([r["logit"] for r in http["rankings"]], abs=1e-5)
    counts = result.as_numpy("token_count").tolist()
    assert counts[2] == stack.reference.max_length  # the long passage was cut to fit
    assert sum(counts) == http["usage"]["prompt_tokens"]


def test_typed_bytes_contents_are_accepted_too(bert_stack):
    request = service_pb2.ModelInferRequest(model_name=grpc_model_name(bert_stack.model_id))
    for name, values in (("query", [QUERY] * 2), ("passage", PASSAGES[:2])):
        tensor = request.inputs.add(name=name, datatype="BYTES", shape=[2])
        tensor.contents.bytes_contents.extend(v.encode() for v in values)
    with grpc.insecure_channel(bert_stack.api.extra["grpc"]) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    names = [o.name for o in response.outputs]
    assert names == ["index", "logit", "token_count"]
    index = np.frombuffer(response.raw_output_contents[0], dtype="<i4")
    http = http_ranking(bert_stack, PASSAGES[:2], "NONE")
    assert index.tolist() == [r["index"] for r in http["rankings"]]


def expect_error(call, code: str) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    assert caught.value.status() == f"StatusCode.{code}", caught.value.message()
    return caught.value.message()


def test_none_over_long_is_invalid_argument_naming_the_passage(bert_stack):
    client = grpcclient.InferenceServerClient(bert_stack.api.extra["grpc"])
    message = expect_error(
        lambda: client.infer(grpc_model_name(bert_stack.model_id), nim_inputs(grpcclient, QUERY, PASSAGES),
                             parameters={"truncate": "none"}),
        "INVALID_ARGUMENT",
    )  # fmt: skip
    assert message.startswith("passage 2:") and "512" in message
    # absent truncate means NONE as well
    expect_error(lambda: client.infer(grpc_model_name(bert_stack.model_id), nim_inputs(grpcclient, QUERY, PASSAGES)),
                 "INVALID_ARGUMENT")  # fmt: skip


def test_unknown_model_is_not_found(bert_stack):
    client = grpcclient.InferenceServerClient(bert_stack.api.extra["grpc"])
    expect_error(lambda: client.infer("no_such_model", nim_inputs(grpcclient, QUERY, PASSAGES[:1])), "NOT_FOUND")
    expect_error(lambda: client.get_model_metadata("no_such_model"), "NOT_FOUND")


def test_bad_inputs_are_invalid_argument(bert_stack):
    client = grpcclient.InferenceServerClient(bert_stack.api.extra["grpc"])
    name = grpc_model_name(bert_stack.model_id)
    query, passage = nim_inputs(grpcclient, QUERY, PASSAGES[:2])
    short_query = grpcclient.InferInput("query", [1], "BYTES")
    short_query.set_data_from_numpy(np.array([QUERY], dtype=object))
    assert "batch size" in expect_error(lambda: client.infer(name, [short_query, passage]), "INVALID_ARGUMENT")
    int_query = grpcclient.InferInput("query", [2], "INT32")
    int_query.set_data_from_numpy(np.array([1, 2], dtype=np.int32))
    assert "BYTES" in expect_error(lambda: client.infer(name, [int_query, passage]), "INVALID_ARGUMENT")
    assert "missing" in expect_error(lambda: client.infer(name, [passage]), "INVALID_ARGUMENT")
    expect_error(lambda: client.infer(name, [query, passage], parameters={"truncate": "middle"}), "INVALID_ARGUMENT")
    mixed = grpcclient.InferInput("query", [2], "BYTES")
    mixed.set_data_from_numpy(np.array([QUERY, "another query"], dtype=object))
    expect_error(lambda: client.infer(name, [mixed, passage]), "INVALID_ARGUMENT")


def test_64_concurrent_aio_calls_are_all_correct(bert_stack):
    name = grpc_model_name(bert_stack.model_id)
    cases = [(f"query number {i}", [f"passage {i}-{j} " * (1 + (i + j) % 7) for j in range(1 + i % 9)])
             for i in range(64)]  # fmt: skip

    async def call_all():
        async with aioclient.InferenceServerClient(bert_stack.api.extra["grpc"]) as client:
            return await asyncio.gather(
                *(client.infer(name, nim_inputs(aioclient, q, ps), outputs=outputs(aioclient)) for q, ps in cases)
            )

    results = asyncio.run(call_all())
    for (query, passages), result in zip(cases, results):
        expected = bert_stack.reference.logits(query, passages)
        got = dict(zip(result.as_numpy("index")[:, 0].tolist(), result.as_numpy("logit")[:, 0].tolist()))
        assert got == pytest.approx(dict(enumerate(expected)), abs=1e-4)


def test_readiness_metadata_and_standard_health(bert_stack):
    client = grpcclient.InferenceServerClient(bert_stack.api.extra["grpc"])
    name = grpc_model_name(bert_stack.model_id)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(name)
    metadata = client.get_model_metadata(name, as_json=True)
    assert metadata["name"] == name
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]} == {"query": "BYTES", "passage": "BYTES"}
    assert {o["name"]: o["datatype"] for o in metadata["outputs"]} == {
        "index": "INT32", "logit": "FP32", "token_count": "INT32"}  # fmt: skip
    assert client.get_server_metadata(as_json=True)["name"] == "rerank-fleet"
    with grpc.insecure_channel(bert_stack.api.extra["grpc"]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_api_key_is_required_as_bearer_metadata(log_dir, redis_server, bert_stack):
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model="unused", model_id=bert_stack.model_id,
                    api_key="grpc-secret")  # fmt: skip
    try:
        client = grpcclient.InferenceServerClient(api.extra["grpc"])
        name = grpc_model_name(bert_stack.model_id)
        expect_error(lambda: client.infer(name, nim_inputs(grpcclient, QUERY, PASSAGES[:2])), "UNAUTHENTICATED")
        expect_error(lambda: client.infer(name, nim_inputs(grpcclient, QUERY, PASSAGES[:2]),
                                          headers={"authorization": "Bearer wrong"}), "UNAUTHENTICATED")  # fmt: skip
        result = client.infer(name, nim_inputs(grpcclient, QUERY, PASSAGES[:2]),
                              headers={"authorization": "Bearer grpc-secret"})  # fmt: skip
        assert result.as_numpy("index").shape == (2, 1)
        assert client.is_server_live()  # health needs no key
    finally:
        api.stop()


def test_the_clients_deadline_is_honoured(log_dir, redis_server):
    """A registered worker that never answers: the call ends at the client's deadline, not the server's."""
    model_id = "silent/grpc-model"
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model=model_id, request_timeout=30)
    try:
        with silent_worker(redis_server.extra["url"], model_id):
            client = grpcclient.InferenceServerClient(api.extra["grpc"])
            started = time.monotonic()
            expect_error(
                lambda: client.infer(grpc_model_name(model_id), nim_inputs(grpcclient, QUERY, PASSAGES[:1]),
                                     client_timeout=1.5),
                "DEADLINE_EXCEEDED",
            )  # fmt: skip
            assert time.monotonic() - started < 5
    finally:
        api.stop()
