"""The API process (`python -m api`) at its edges: it binds its ports exclusively and stops at once, in one
line, when one is taken; it logs each request once; and what its graceful shutdown cuts short is answered
with the 503 envelope."""

from __future__ import annotations

import json
import signal
import socket
import sys
import subprocess
import time

import httpx
import pytest

from api.cli.embedded_redis import free_port
from tests.processes import REPO_ROOT, child_env, silent_worker, start_api

MODEL_ID = "lifecycle/silent"


@pytest.fixture
def silent_model(redis_server):
    with silent_worker(redis_server.extra["url"], MODEL_ID):
        yield redis_server.extra["url"]


def _second_api(redis_url: str, port: int, grpc_port: int) -> subprocess.CompletedProcess:
    env = child_env(redis_url=redis_url, host="127.0.0.1", port=port, grpc_port=grpc_port, model_id=MODEL_ID)
    return subprocess.run([sys.executable, "-m", "api"], env=env, capture_output=True, text=True, timeout=60,
                          cwd=REPO_ROOT)  # fmt: skip


def test_a_taken_grpc_port_is_not_shared(log_dir, silent_model):
    first = start_api(log_dir, redis_url=silent_model, model="unused", model_id=MODEL_ID)
    try:
        grpc_port = int(first.extra["grpc"].rsplit(":", 1)[1])
        started = time.monotonic()
        second = _second_api(silent_model, free_port(), grpc_port)
        assert second.returncode != 0
        assert time.monotonic() - started < 30
        assert f"cannot listen for gRPC on 127.0.0.1:{grpc_port}" in second.stdout + second.stderr
    finally:
        first.stop()


def test_a_taken_http_port_stops_the_api_at_once(silent_model):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        second = _second_api(silent_model, port, free_port())
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in second.stdout
    assert "Traceback" not in second.stdout + second.stderr


def test_each_request_is_logged_once_and_probes_and_scrapes_at_debug_only(log_dir, silent_model):
    api = start_api(log_dir, redis_url=silent_model, model="unused", model_id=MODEL_ID)  # log level info
    quiet = ("/v1/health/live", "/v1/health/ready", "/metrics", "/v1/metrics")
    try:
        for path in ("/v1/models", *quiet):
            httpx.get(api.extra["url"] + path, timeout=10)
        time.sleep(0.5)
        lines = [line for line in api.log().splitlines() if "/v1/models" in line]
        assert len(lines) == 1 and "api.access" in lines[0], lines
        assert not [line for line in api.log().splitlines() if any(f" {path} " in line for path in quiet)]
    finally:
        api.stop()


def test_a_request_cut_short_by_shutdown_gets_the_503_envelope(log_dir, silent_model):
    # graceful shutdown waits RERANK_REQUEST_TIMEOUT + 5 s; a batch-job upload is not bound by it
    api = start_api(log_dir, redis_url=silent_model, model="unused", model_id=MODEL_ID, request_timeout=1)
    host, port = api.extra["url"].removeprefix("http://").split(":")
    line = json.dumps({"model": MODEL_ID, "query": {"text": "q"}, "passages": [{"text": "p"}]}).encode() + b"\n"
    chunk = b"%x\r\n%s\r\n" % (len(line), line)
    try:
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /v1/ranking/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" + chunk)  # fmt: skip
            time.sleep(0.5)
            api.process.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            sock.settimeout(0.5)
            answer, deadline = b"", time.monotonic() + 20
            while not answer and time.monotonic() < deadline:
                try:
                    sock.sendall(chunk)  # a slow upload, still going
                    answer = sock.recv(65536)
                except TimeoutError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
            waited = time.monotonic() - stopping
            sock.settimeout(5)
            try:
                while piece := sock.recv(65536):  # the envelope may follow the head in its own packet
                    answer += piece
            except (TimeoutError, ConnectionResetError):
                pass
        assert answer.startswith(b"HTTP/1.1 503"), answer[:300]
        assert b"retry-after: 5" in answer.lower() and b'"service_unavailable"' in answer
        assert 1 + 5 - 1 < waited < 1 + 5 + 3, waited  # RERANK_REQUEST_TIMEOUT + 5 s, not a fixed grace
        api.process.wait(timeout=30)
    finally:
        api.stop()
