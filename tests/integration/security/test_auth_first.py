"""With RERANK_API_KEY set, a request without the key gets a 401 and nothing else: its body is never read
(HTTP) and its message never decoded (gRPC), so unauthenticated clients cannot stall the event loop that
HTTP and gRPC share."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time

import grpc
import httpx
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from shared.schemas import ErrorEnvelope
from tests.processes import silent_worker, start_api

KEY = "auth-first-test-key"
MODEL_ID = "auth/first"


@pytest.fixture(scope="module")
def keyed_api(log_dir, redis_server):
    with silent_worker(redis_server.extra["url"], MODEL_ID):
        api = start_api(log_dir, redis_url=redis_server.extra["url"], model="unused", model_id=MODEL_ID, api_key=KEY)
        yield api
        api.stop()


def _big_body(megabytes: float = 7.5) -> bytes:
    """A /v1/ranking body whose JSON is costly to decode (two million empty lists, about 1 s here), under the
    8 MiB body limit."""
    filler = [[]] * int(megabytes * 1024 * 1024 / 4)
    return json.dumps({"model": MODEL_ID, "query": {"text": "q"}, "passages": [{"text": "p"}], "x": filler}).encode()


def _status_line(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    try:
        return sock.recv(65536).split(b"\r\n", 1)[0]
    except TimeoutError:
        return b""


def test_401_comes_before_the_body_is_sent(keyed_api):
    """The API answers a request without the key from its headers alone, with the envelope."""
    host, port = keyed_api.extra["url"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v1/ranking HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 8000000\r\n\r\n" + b"{" * 1000)  # fmt: skip
        assert _status_line(sock, timeout=5) == b"HTTP/1.1 401 Unauthorized"


def test_unauthenticated_bodies_do_not_stall_a_health_probe(keyed_api):
    url = keyed_api.extra["url"]
    body = _big_body()
    headers = {"content-type": "application/json"}

    def flood(seconds: float = 4.0) -> list[int]:
        statuses, end = [], time.monotonic() + seconds
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < end:
                statuses.append(client.post(url + "/v1/ranking", content=body, headers=headers).status_code)
        return statuses

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        floods = [pool.submit(flood) for _ in range(2)]
        time.sleep(0.5)
        probes = []
        with httpx.Client(timeout=30) as client:
            while not all(f.done() for f in floods):
                started = time.monotonic()
                assert client.get(url + "/v1/health/live").status_code == 200
                probes.append(time.monotonic() - started)
                time.sleep(0.05)
        statuses = [s for f in floods for s in f.result()]
    assert statuses and set(statuses) == {401}
    # decoding one such body takes about 1 s here: a probe that waits behind one takes as long
    assert max(probes) < 0.3, f"slowest health probe {max(probes):.2f}s over {len(probes)} probes"


def test_the_docs_follow_the_key(keyed_api):
    url = keyed_api.extra["url"]
    for path in ("/docs", "/redoc", "/openapi.json"):
        response = httpx.get(url + path, timeout=10)
        assert response.status_code == 401, path
        ErrorEnvelope.model_validate(response.json())
        assert httpx.get(url + path, headers={"authorization": f"Bearer {KEY}"}, timeout=10).status_code == 200
    assert httpx.get(url + "/v1/health/live", timeout=10).status_code == 200


def test_grpc_refuses_before_decoding_the_message(keyed_api):
    """An unauthenticated ModelInfer is UNAUTHENTICATED however broken its message: it is never decoded."""
    with grpc.insecure_channel(keyed_api.extra["grpc"]) as channel:
        raw = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                  request_serializer=None, response_deserializer=pb.ModelInferResponse.FromString)  # fmt: skip
        with pytest.raises(grpc.RpcError) as refused:
            raw(b"\xff" * 4096, timeout=10)  # not a protobuf message: decoding it would fail
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live  # health stays open
        with pytest.raises(grpc.RpcError) as garbled:
            raw(b"\xff" * 4096, timeout=10, metadata=[("authorization", f"Bearer {KEY}")])
        assert garbled.value.code() is not grpc.StatusCode.UNAUTHENTICATED  # decoded, and refused as garbage
