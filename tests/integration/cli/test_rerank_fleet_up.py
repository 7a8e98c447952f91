"""The one command a user runs: `rerank-fleet up` (API, workers and Flower), and a worker's start-up when its
model is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import tritonclient.grpc
from prometheus_client.parser import text_string_to_metric_families

from api.cli.embedded_redis import free_port
from tests.processes import REPO_ROOT, child_env


FLOWER_AUTH = ("fleet-admin", "fleet-test-password")


def _start_up(tmp_path, *options: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`rerank-fleet up OPTIONS` in the background; returns once it printed that it is ready, with its output."""
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "api.cli", "up", *options], env=env or child_env(), stdout=log,
                              stderr=subprocess.STDOUT, cwd=REPO_ROOT)  # fmt: skip
    deadline = time.monotonic() + 120
    while "is ready" not in log_path.read_text(errors="replace"):
        if up.poll() is not None or time.monotonic() > deadline:
            up.kill()
            raise AssertionError(f"rerank-fleet up did not become ready:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.2)
    return up, log_path.read_text(errors="replace")


def _stop_up(up: subprocess.Popen, log_path, timeout: float = 60) -> int:
    """SIGTERM `rerank-fleet up` and return its exit code. If it is still running after `timeout`, fail with
    the processes it left and, for each Python one, where its threads were: the children run with
    PYTHONFAULTHANDLER (child_env), so SIGABRT prints their stacks into the log before they die."""
    up.send_signal(signal.SIGTERM)
    try:
        return up.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        left = {pid: _command(pid) for pid in [*_descendants(up.pid), up.pid]}
        listing = "\n".join(f"  {pid} {command}" for pid, command in left.items())
        for pid, command in left.items():
            if "python" in command:
                os.kill(pid, signal.SIGABRT)
        time.sleep(3)
        up.kill()
        raise AssertionError(f"rerank-fleet up still ran {timeout:g}s after SIGTERM, with:\n{listing}\n"
                             f"{log_path.read_text(errors='replace')[-20000:]}") from None  # fmt: skip


def test_up_serves_ranking_and_stops_everything_on_sigterm(bert_model_dir, tmp_path):
    port, grpc_port, flower_port = free_port(), free_port(), free_port()
    env = child_env(flower_basic_auth=":".join(FLOWER_AUTH))
    up, output = _start_up(tmp_path, "--model", bert_model_dir, "--model-id", "fleet-test", "--port", str(port),
                           "--grpc-port", str(grpc_port), "--flower-port", str(flower_port), env=env)  # fmt: skip
    try:
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
        flower = f"http://127.0.0.1:{flower_port}"
        assert f"Flower  {flower}/" in output
        assert _poll(lambda: _status(f"{flower}/api/workers")) == 401  # it asks for the configured credentials
        workers = _poll(lambda: httpx.get(f"{flower}/api/workers?refresh=1", auth=FLOWER_AUTH, timeout=30).json())
        assert [name for name in workers if name.startswith("rerank-fleet-test-cpu-")], workers
        children = _children(up.pid)
        assert len(children) >= 4  # redis, a worker, the API, Flower
        assert _stop_up(up, tmp_path / "up.log") == 0
        for pid in children:
            assert not _alive(pid), f"child {pid} outlived rerank-fleet up"
    finally:
        if up.poll() is None:
            up.kill()


def test_no_flower_starts_no_flower(bert_model_dir, tmp_path):
    up, output = _start_up(tmp_path, "--model", bert_model_dir, "--model-id", "no-flower-test", "--port",
                           str(free_port()), "--grpc-port", "0", "--no-flower")  # fmt: skip
    try:
        commands = [_command(pid) for pid in _children(up.pid)]
        assert len(commands) >= 3, commands  # redis, a worker, the API
        assert not [command for command in commands if "flower" in command], commands
        assert "Flower" not in output
        assert _stop_up(up, tmp_path / "up.log") == 0
    finally:
        if up.poll() is None:
            up.kill()


def test_cpu_workers_share_the_cores(bert_model_dir, tmp_path):
    port = free_port()
    up, _ = _start_up(tmp_path, "--model", bert_model_dir, "--model-id", "two-cpu-test", "--port", str(port),
                      "--grpc-port", "0", "--no-flower", "--cpu-workers", "2")  # fmt: skip
    try:
        workers = [pid for pid in _children(up.pid) if _command(pid).endswith("-m worker")]
        assert len(workers) == 2
        threads = {_environ(pid).get("RERANK_TORCH_THREADS") for pid in workers}
        assert threads == {str(max(1, (os.cpu_count() or 1) // 2))}
        ready = _poll(lambda: httpx.get(f"http://127.0.0.1:{port}/v1/health/ready", timeout=10).json()["workers"] == 2)
        assert ready
        body = {"model": "two-cpu-test", "query": {"text": "q"}, "passages": [{"text": "a"}, {"text": "b"}]}
        assert httpx.post(f"http://127.0.0.1:{port}/v1/ranking", json=body, timeout=30).status_code == 200
        assert _stop_up(up, tmp_path / "up.log") == 0
    finally:
        if up.poll() is None:
            up.kill()


def test_up_serves_two_models_each_on_its_own_queue_and_workers(bert_model_dir, qwen3_model_dir, tmp_path):
    port, grpc_port, flower_port = free_port(), free_port(), free_port()
    env = child_env(flower_basic_auth=":".join(FLOWER_AUTH))
    up, output = _start_up(tmp_path, "--model", f"acme/cross={bert_model_dir}", "--model", f"qwen={qwen3_model_dir}",
                           "--port", str(port), "--grpc-port", str(grpc_port), "--flower-port", str(flower_port),
                           env=env)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        assert "models 'acme/cross', 'qwen'" in output and "'acme_cross', 'qwen'" in output
        workers = [_environ(pid) for pid in _children(up.pid) if _command(pid).endswith("-m worker")]
        assert sorted(env["RERANK_MODEL_ID"] for env in workers) == ["acme/cross", "qwen"]
        assert {env["RERANK_TORCH_THREADS"] for env in workers} == {str(max(1, (os.cpu_count() or 1) // 2))}
        sent = {"acme/cross": 3, "qwen": 2}
        for model, passages in sent.items():
            body = {"model": model, "query": {"text": "q"}, "passages": [{"text": f"p{i}"} for i in range(passages)]}
            response = httpx.post(f"{base}/v1/ranking", json=body, timeout=30)
            assert response.status_code == 200, response.text
            assert len(response.json()["rankings"]) == passages
        unknown = {"model": "no/such-model", "query": {"text": "q"}, "passages": [{"text": "p"}]}
        assert httpx.post(f"{base}/v1/ranking", json=unknown, timeout=30).status_code == 404
        assert {card["id"] for card in httpx.get(f"{base}/v1/models").json()["data"]} == set(sent)
        assert httpx.get(f"{base}/v1/health/ready").json()["models"] == {"acme/cross": 1, "qwen": 1}
        # each model's pairs were scored by its own worker, from its own queue
        assert _poll(lambda: _pairs_by_model(base) == sent), _pairs_by_model(base)
        client = tritonclient.grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        assert client.is_model_ready("acme_cross") and client.is_model_ready("qwen")
        flower = _poll(lambda: httpx.get(f"http://127.0.0.1:{flower_port}/api/workers?refresh=1", auth=FLOWER_AUTH,
                                         timeout=30).json())  # fmt: skip
        assert {name.split("-cpu-")[0] for name in flower} == {"rerank-acme-cross", "rerank-qwen"}, flower
        assert _stop_up(up, tmp_path / "up.log") == 0
    finally:
        if up.poll() is None:
            up.kill()


def _pairs_by_model(base: str) -> dict[str, int]:
    families = text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=10).text)
    samples = [s for f in families for s in f.samples if s.name == "rerank_worker_pairs_total"]
    return {s.labels["model"]: int(s.value) for s in samples if s.value}


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


def _descendants(pid: int) -> list[int]:
    """Children, grandchildren (a worker's engine), and so on."""
    return [d for child in _children(pid) for d in (child, *_descendants(child))]


def _command(pid: int) -> str:
    return subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as environ:
        pairs = [entry.split(b"=", 1) for entry in environ.read().split(b"\0") if b"=" in entry]
    return {key.decode(): value.decode(errors="replace") for key, value in pairs}


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=10).status_code
    except httpx.HTTPError:
        return None


def _poll(fetch, timeout: float = 30):
    """fetch() until it returns something non-empty (or the time is up)."""
    deadline = time.monotonic() + timeout
    while not (result := fetch()) and time.monotonic() < deadline:
        time.sleep(0.3)
    return result


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
