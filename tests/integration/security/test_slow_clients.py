"""Slow or oversized clients cannot hold the API's connections: headers must arrive within
RERANK_HEADER_TIMEOUT and fit in RERANK_MAX_HEADER_BYTES, and a body that stops arriving for
RERANK_BODY_TIMEOUT is answered 408; an idle keep-alive connection closes after RERANK_KEEPALIVE_TIMEOUT;
past RERANK_MAX_CONNECTIONS a request gets the 503 envelope."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from shared.schemas import ErrorEnvelope
from tests.integration.hostile_clients import connect, silent_api
from tests.processes import silent_worker, start_api

MODEL_ID = "slow/clients"
LIMITS = {"header_timeout": 2, "body_timeout": 2, "max_header_bytes": 16384, "keepalive_timeout": 1}


@pytest.fixture(scope="module")
def guarded_api(log_dir, redis_server):
    with silent_api(log_dir, redis_server, MODEL_ID, **LIMITS) as api:
        yield api


def _drip(sock: socket.socket, data: bytes, every: float, seconds: float) -> tuple[float, bytes]:
    """Send `data` a byte at a time; return when the server closed (seconds taken) and what it answered."""
    started = time.monotonic()
    sock.settimeout(every)
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
            answer = sock.recv(65536)
            return time.monotonic() - started, answer  # an answer, or b"" once closed
        except TimeoutError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started, b""
        if time.monotonic() - started > seconds:
            break
    return time.monotonic() - started, b"still open"


def test_a_dripped_header_is_closed_within_the_timeout(guarded_api):
    with connect(guarded_api) as sock:
        took, answer = _drip(sock, b"GET /v1/health/live HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 1000,
                             every=0.2, seconds=15)  # fmt: skip
    assert answer != b"still open", f"the connection was still open after {took:.1f}s"
    assert took < LIMITS["header_timeout"] + 2
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")


def test_an_oversized_header_is_refused(guarded_api):
    with connect(guarded_api) as sock:
        sock.sendall(b"GET /v1/health/live HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        sock.settimeout(10)
        answer = b""
        try:
            for _ in range(64):  # up to 1 MiB of header
                sock.sendall(b"b" * 16384)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            pass
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


@pytest.mark.parametrize("kib", [20, 40, 70])
def test_an_oversized_header_in_one_write_is_refused(guarded_api, kib):
    """Headers complete in one read never looked incomplete to the piece-by-piece count: they are counted as parsed."""
    with connect(guarded_api) as sock:
        sock.settimeout(10)
        sock.sendall(b"GET /v1/health/live HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * (kib * 1024) + b"\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b'"type":"request_too_large"' in answer.replace(b" ", b"")


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /v1/health/live HTTP/1.1\r\nHost: localhost\r\nA header without a colon\r\n\r\n",
    b"POST /v1/ranking HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nabcde",
], ids=["not-http", "header-without-colon", "two-lengths"])  # fmt: skip
def test_malformed_http_gets_the_400_envelope(guarded_api, request_bytes):
    with connect(guarded_api) as sock:
        sock.settimeout(10)
        sock.sendall(request_bytes)
        answer = b""
        while piece := sock.recv(65536):
            answer += piece
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"application/json" in head.lower()
    assert ErrorEnvelope.model_validate_json(body).error.type == "validation_error"


def test_a_body_that_stops_arriving_is_answered_408(guarded_api):
    body = json.dumps({"model": MODEL_ID, "query": {"text": "q"}, "passages": [{"text": "p"}]}).encode()
    with connect(guarded_api) as sock:
        sock.sendall(b"POST /v1/ranking HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])  # fmt: skip
        started = time.monotonic()
        sock.settimeout(15)
        answer = b""
        try:
            while piece := sock.recv(65536):
                answer += piece
        except TimeoutError:
            answer = answer or b"still waiting"
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < LIMITS["body_timeout"] + 3
    assert b'"type":"timeout_error"' in answer.replace(b" ", b"")


def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(guarded_api):
    with connect(guarded_api) as sock:
        sock.sendall(b"GET /v1/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.settimeout(10)
        answer = sock.recv(65536)
        answered = time.monotonic()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        rest = b""
        try:
            while piece := sock.recv(65536):  # the body, then the close
                rest += piece
        except TimeoutError:
            rest = b"still open"
        idle = time.monotonic() - answered
    assert rest != b"still open", "the idle connection was still open after 10 s"
    assert LIMITS["keepalive_timeout"] - 0.5 < idle < LIMITS["keepalive_timeout"] + 2, idle


def test_past_max_connections_a_request_gets_the_503_envelope(log_dir, redis_server):
    with silent_worker(redis_server.extra["url"], MODEL_ID):
        api = start_api(log_dir, redis_url=redis_server.extra["url"], model="unused", model_id=MODEL_ID,
                        max_connections=3, header_timeout=30)  # fmt: skip
        try:
            idle = [connect(api) for _ in range(3)]  # connected, nothing sent yet
            time.sleep(0.3)
            with httpx.Client(timeout=10) as client:
                refused = client.get(api.extra["url"] + "/v1/health/live")
            for sock in idle:
                sock.close()
            time.sleep(0.3)
            served = httpx.get(api.extra["url"] + "/v1/health/live", timeout=10)
        finally:
            api.stop()
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["type"] == "service_unavailable"
    assert "RERANK_MAX_CONNECTIONS" in refused.json()["error"]["message"]
    assert refused.headers["retry-after"] == "1"
    assert served.status_code == 200
