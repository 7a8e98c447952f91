"""`rerank-fleet up` restarts a child that dies: a SIGKILLed worker is replaced and the new one serves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from api.cli.embedded_redis import free_port
from tests.integration.cli.test_rerank_fleet_up import _stop_up
from tests.processes import REPO_ROOT, child_env


def _wait_for(log_path, text: str, up: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in log_path.read_text(errors="replace"):
        assert up.poll() is None, log_path.read_text(errors="replace")
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{log_path.read_text(errors='replace')[-3000:]}"
        time.sleep(0.2)


def _worker_pid(up_pid: int) -> int:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(up_pid)], capture_output=True, text=True).stdout
    return next(int(line.split()[0]) for line in out.splitlines() if "-m worker" in line)


def test_up_restarts_a_killed_worker_that_then_serves(bert_model_dir, tmp_path):
    port = free_port()
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "up", "--model", bert_model_dir, "--model-id", "supervised",
             "--port", str(port), "--grpc-port", "0", "--flower-port", str(free_port())],
            env=child_env(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
        )  # fmt: skip
    body = {"model": "supervised", "query": {"text": "q"}, "passages": [{"text": "a"}, {"text": "b"}]}
    try:
        _wait_for(log_path, "is ready", up)
        first = _worker_pid(up.pid)
        os.kill(first, signal.SIGKILL)
        _wait_for(log_path, "worker-0 exited with code -9; restarting it in 1s", up, timeout=10)
        _wait_for(log_path, "restarted worker-0", up, timeout=10)
        second = _worker_pid(up.pid)
        assert second != first
        deadline = time.monotonic() + 120
        while True:  # the new worker loads its model, then registers
            response = httpx.post(f"http://127.0.0.1:{port}/v1/ranking", json=body, timeout=30)
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert response.status_code == 200, response.text
        assert up.poll() is None
        assert _stop_up(up, log_path) == 0
    finally:
        if up.poll() is None:
            up.kill()
