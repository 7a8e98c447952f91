"""`rerank-fleet up` keeps its jobs: the embedded Redis writes an append-only file in the data directory, a
restart on the same directory finds the jobs and their results, and a second `up` on a directory in use refuses
at once with one line naming it."""

from __future__ import annotations

import stat
import subprocess
import sys
import time

import httpx

from api.cli.embedded_redis import free_port
from tests.integration.cli.test_rerank_fleet_up import _start_up, _stop_up
from tests.processes import REPO_ROOT, child_env

MODEL_ID = "kept-jobs"
REQUESTS = [{"custom_id": f"r{i}", "query": {"text": "capital of france"},
             "passages": [{"text": "paris is the capital"}, {"text": f"lyon is a city {i}"}]}
            for i in range(3)]  # fmt: skip


def _up(tmp_path, model_dir: str, data_dir, port: int) -> tuple[subprocess.Popen, str]:
    return _start_up(tmp_path, "--model", model_dir, "--model-id", MODEL_ID, "--port", str(port), "--grpc-port", "0",
                     "--no-flower", "--data-dir", str(data_dir), env=child_env())  # fmt: skip


def _finished_job(url: str, job_id: str) -> dict:
    deadline = time.monotonic() + 120
    while True:
        job = httpx.get(f"{url}/v1/ranking/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def test_jobs_and_results_survive_a_restart_on_the_same_data_dir(bert_model_dir, tmp_path):
    data_dir, port = tmp_path / "data", free_port()
    up, output = _up(tmp_path, bert_model_dir, data_dir, port)
    url = f"http://127.0.0.1:{port}"
    try:
        assert str(data_dir) in output
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        assert httpx.get(f"{url}/v1/ranking/jobs", timeout=10).json()["data"] == []  # a fresh directory: no job
        job = httpx.post(f"{url}/v1/ranking/jobs", json={"model": MODEL_ID, "requests": REQUESTS}, timeout=30).json()
        assert _finished_job(url, job["id"])["status"] == "succeeded"
        lines = httpx.get(f"{url}/v1/ranking/jobs/{job['id']}/results", timeout=10).text
        # a second `up` on the directory in use refuses at once, in one line that names it
        started = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "api.cli", "up", "--model", bert_model_dir, "--port",
                                 str(free_port()), "--grpc-port", "0", "--no-flower", "--data-dir", str(data_dir)],
                                env=child_env(), capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)  # fmt: skip
        print("second up:", second.returncode, repr(second.stderr), f"{time.monotonic() - started:.1f}s")
        assert second.returncode == 1
        refusal = [line for line in second.stderr.splitlines() if "rerank-fleet" in line]
        assert len(refusal) == 1 and str(data_dir) in refusal[0] and "in use" in refusal[0]
        assert time.monotonic() - started < 15
    finally:
        assert _stop_up(up, tmp_path / "up.log") == 0
    up, _ = _up(tmp_path, bert_model_dir, data_dir, port)
    try:
        kept = httpx.get(f"{url}/v1/ranking/jobs/{job['id']}", timeout=10).json()
        assert kept["status"] == "succeeded" and kept["progress"]["completed_requests"] == 3
        assert httpx.get(f"{url}/v1/ranking/jobs/{job['id']}/results", timeout=10).text == lines
    finally:
        assert _stop_up(up, tmp_path / "up.log") == 0
    # another directory is another, empty, store
    up, _ = _up(tmp_path, bert_model_dir, tmp_path / "other", port)
    try:
        assert httpx.get(f"{url}/v1/ranking/jobs/{job['id']}", timeout=10).status_code == 404
        assert httpx.get(f"{url}/v1/ranking/jobs", timeout=10).json()["data"] == []
    finally:
        assert _stop_up(up, tmp_path / "up.log") == 0
