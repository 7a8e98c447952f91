"""A connection answered before its body was read is closed (a keyless client dripping its body after the 401
cannot hold it), and a body has a total deadline (RERANK_BODY_TOTAL_TIMEOUT) besides the per-piece one."""

from __future__ import annotations

import socket
import time

import pytest

from tests.integration.hostile_clients import connect, silent_api

KEY = "body-deadlines-key"
MODEL_ID = "body/deadlines"
LIMITS = {"body_timeout": 2, "body_total_timeout": 3, "keepalive_timeout": 1, "api_key": KEY}


@pytest.fixture(scope="module")
def keyed_api(log_dir, redis_server):
    with silent_api(log_dir, redis_server, MODEL_ID, **LIMITS) as api:
        yield api


def _drip_until_closed(sock: socket.socket, every: float, seconds: float) -> tuple[float, bytes]:
    """Send a byte every `every` s, reading what comes back, until the server closes the connection or
    `seconds` pass; return the time taken and everything read (ending in b"<still open>" if never closed)."""
    started, answer = time.monotonic(), b""
    sock.settimeout(every)
    while time.monotonic() - started < seconds:
        try:
            sock.sendall(b"x")
            piece = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started, answer
        if not piece:
            return time.monotonic() - started, answer
        answer += piece
    return time.monotonic() - started, answer + b"<still open>"


def test_a_keyless_client_dripping_its_body_after_the_401_is_disconnected(keyed_api):
    with connect(keyed_api) as sock:
        sock.sendall(b"POST /v1/ranking HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000\r\n\r\n{")  # fmt: skip
        took, answer = _drip_until_closed(sock, every=0.2, seconds=12)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert not answer.endswith(b"<still open>"), f"the connection was still open after {took:.1f} s of dripping"
    assert took < 2, took


@pytest.mark.parametrize(("headers", "status"), [
    (b"Content-Type: application/json\r\nContent-Length: 99999999\r\n", b"413"),  # over RERANK_MAX_BODY_BYTES
    (b"Content-Type: text/plain\r\nContent-Length: 1000000\r\n", b"415"),
], ids=["413-declared", "415"])  # fmt: skip
def test_other_answers_before_the_body_close_the_connection_too(keyed_api, headers, status):
    with connect(keyed_api) as sock:
        sock.sendall(b"POST /v1/ranking HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + KEY.encode()
                     + b"\r\n" + headers + b"\r\n{")  # fmt: skip
        took, answer = _drip_until_closed(sock, every=0.2, seconds=12)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    assert not answer.endswith(b"<still open>") and took < 2, (took, answer[-40:])


def test_an_authenticated_body_dripped_slowly_is_answered_408_within_the_total_deadline(keyed_api):
    with connect(keyed_api) as sock:
        sock.sendall(b"POST /v1/ranking HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 100000\r\n\r\n{")  # fmt: skip
        took, answer = _drip_until_closed(sock, every=0.5, seconds=15)  # each byte well within RERANK_BODY_TIMEOUT
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"RERANK_BODY_TOTAL_TIMEOUT" in answer and b'"type":"timeout_error"' in answer.replace(b" ", b"")
    assert not answer.endswith(b"<still open>")
    assert LIMITS["body_total_timeout"] - 0.5 < took < LIMITS["body_total_timeout"] + 2, took
