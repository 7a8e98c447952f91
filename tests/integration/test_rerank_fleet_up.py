"""The one command a user runs: `rerank-fleet up`, and a worker's start-up when its model is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import tritonclient.grpc

from api.embedded_redis import free_port
from tests.processes import REPO_ROOT, child_env


def test_up_serves_ranking_and_stops_everything_on_sigterm(bert_model_dir, tmp_path):
    port, grpc_port = free_port(), free_port()
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "up", "--model", bert_model_dir, "--model-id", "fleet-test",
             "--port", str(port), "--grpc-port", str(grpc_port)],
            env=child_env(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "is ready" not in log_path.read_text(errors="replace"):
            assert up.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "rerank-fleet up did not become ready"
            time.sleep(0.2)
        output = log_path.read_text(errors="replace")
        assert f"http://127.0.0.1:{port}/v1/ranking" in output
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/ranking",
            json={"model": "fleet-test", "query": {"text": "q"}, "passages": [{"text": "a"}, {"text": "b"}]},
            timeout=30,
        )
        assert response.status_code == 200
        assert len(response.json()["rankings"]) == 2
        assert f"127.0.0.1:{grpc_port}" in output and "'fleet_test'" in output
        client = tritonclient.grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        query, passage = (tritonclient.grpc.InferInput(name, [2], "BYTES") for name in ("query", "passage"))
        query.set_data_from_numpy(np.array(["q", "q"], dtype=object))
        passage.set_data_from_numpy(np.array(["a", "b"], dtype=object))
        result = client.infer("fleet_test", [query, passage], parameters={"truncate": "none"})
        assert sorted(result.as_numpy("index")[:, 0].tolist()) == [0, 1]
        children = _children(up.pid)
        assert len(children) >= 3  # redis, a worker, the API
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
        for pid in children:
            assert not _alive(pid), f"child {pid} outlived rerank-fleet up"
    finally:
        if up.poll() is None:
            up.kill()


def test_a_worker_whose_model_cannot_be_had_fails_at_once_with_a_hint(tmp_path):
    env = child_env(model="acme/not-cached-reranker", redis_url="redis://127.0.0.1:1/0")
    env.pop("HF_HUB_OFFLINE")
    env["HF_HOME"] = str(tmp_path / "empty-cache")
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"  # nothing listens: like a machine without network
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "worker"], env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )
    assert result.returncode == 2
    assert time.monotonic() - started < 30
    assert "acme/not-cached-reranker" in result.stderr
    assert "RERANK_MODEL=DIR" in result.stderr and "--model DIR" in result.stderr
    assert "Traceback" not in result.stderr


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(line) for line in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
