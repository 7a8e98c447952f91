"""`rerank-fleet up` refuses at once, in one line, what it cannot serve: a port that is taken (named, with the
option that changes it), `--device cuda` without a GPU, an invalid setting."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from api.cli.embedded_redis import free_port
from tests.processes import REPO_ROOT, child_env


def _up(*options: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "api.cli", "up", "--model", "/nonexistent/model", *options],
                          env=env or child_env(), capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)  # fmt: skip


@pytest.mark.parametrize("which, flag", [("--port", "--port"), ("--grpc-port", "--grpc-port"),
                                         ("--flower-port", "--flower-port")])  # fmt: skip
def test_a_taken_port_stops_up_before_anything_starts(which, flag):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        ports = {"--port": str(free_port()), "--grpc-port": str(free_port()), "--flower-port": str(free_port())}
        ports[which] = str(taken.getsockname()[1])
        started = time.monotonic()
        result = _up(*(item for pair in ports.items() for item in pair))
    assert result.returncode == 1
    assert time.monotonic() - started < 20
    lines = [line for line in result.stderr.splitlines() if line.startswith("rerank-fleet:")]
    assert len(lines) == 1 and f"port {ports[which]}" in lines[0] and flag in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_device_cuda_without_a_gpu_is_refused():
    env = child_env()
    env["CUDA_VISIBLE_DEVICES"] = ""
    result = _up("--device", "cuda", "--port", str(free_port()), env=env)
    assert result.returncode == 1
    assert "--device cuda" in result.stderr and "no GPU" in result.stderr and "Traceback" not in result.stderr


def test_an_invalid_setting_is_one_line():
    env = child_env(max_passages="lots")
    result = _up(env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == "rerank-fleet: invalid setting: RERANK_MAX_PASSAGES must be a valid integer, " \
        "unable to parse string as an integer"
