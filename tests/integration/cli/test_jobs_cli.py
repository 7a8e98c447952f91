"""`rerank-fleet jobs ...` as a user runs it: the real command in a subprocess against real APIs, Redis and worker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from api.cli.embedded_redis import free_port
from shared.job_schemas import Job, JobList
from tests.processes import REPO_ROOT, child_env, start_api

REQUESTS = [
    {"custom_id": f"doc-{i}", "query": {"text": f"what do plants need {i}"},
     "passages": [{"text": "water and light"}, {"text": "a stone in a river"}, {"text": "sugar from the sun"}][: 1 + i % 3]}
    for i in range(7)
]  # fmt: skip


def cli(url: str, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run `rerank-fleet jobs <args>` with RERANK_URL=url; any extra environment as keyword arguments."""
    argv = [sys.executable, "-m", "api.cli", "jobs", *args]
    environment = {**child_env(), "RERANK_URL": url, **env}
    return subprocess.run(argv, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(run: subprocess.CompletedProcess, *fragments: str) -> None:
    assert run.returncode == 1, run
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("rerank-fleet: "), run.stderr
    for fragment in fragments:
        assert fragment in run.stderr


def write_ndjson(path, requests) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in requests))
    return str(path)


@pytest.fixture(scope="module")
def finished(bert_stack, tmp_path_factory):
    """A job submitted with `submit --wait`: the run and the job id."""
    upload = write_ndjson(tmp_path_factory.mktemp("cli") / "requests.jsonl", REQUESTS)
    run = cli(bert_stack.url, "submit", upload, "--model", bert_stack.model_id, "--wait")
    return run, run.stdout.strip()


def test_submit_wait_prints_the_id_and_draws_progress_until_success(finished):
    run, job_id = finished
    assert run.returncode == 0, run.stderr
    assert re.fullmatch(r"[\w-]+", job_id), run.stdout  # the id alone on stdout
    pairs = sum(len(r["passages"]) for r in REQUESTS)
    final = f"[########################] 100% 7/7 requests  {pairs}/{pairs} pairs  "
    assert final in run.stderr, run.stderr
    assert re.search(r"[\d.]+ req/s  [\d.]+ pairs/s  ETA 0:00\n", run.stderr)
    assert f"job {job_id} succeeded: 7 completed, 0 failed in " in run.stderr
    assert "Traceback" not in run.stderr


def test_results_to_a_file_have_one_line_per_request_in_order(bert_stack, finished, tmp_path):
    _, job_id = finished
    out = tmp_path / "out.jsonl"
    run = cli(bert_stack.url, "results", job_id, "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and str(out) in run.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["index"] for line in lines] == list(range(len(REQUESTS)))
    assert [line["custom_id"] for line in lines] == [r["custom_id"] for r in REQUESTS]
    assert [len(line["response"]["rankings"]) for line in lines] == [len(r["passages"]) for r in REQUESTS]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no partial file left behind
    to_stdout = cli(bert_stack.url, "results", job_id)
    assert to_stdout.returncode == 0 and to_stdout.stdout == out.read_text()


def test_status_list_and_cancel_of_a_finished_job(bert_stack, finished):
    _, job_id = finished
    status = cli(bert_stack.url, "status", job_id)
    assert status.returncode == 0, status.stderr
    job = Job.model_validate_json(status.stdout)
    assert (job.id, job.status, job.model) == (job_id, "succeeded", bert_stack.model_id)
    assert job.progress.completed_requests == job.progress.total_requests == len(REQUESTS)

    table = cli(bert_stack.url, "list", "--limit", "100")
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith(job_id))
    assert row.split()[1:4] == ["succeeded", bert_stack.model_id, "7/7"]
    listed = JobList.model_validate_json(cli(bert_stack.url, "list", "--json", "--limit", "100").stdout)
    assert job_id in [j.id for j in listed.data]

    cancel = cli(bert_stack.url, "cancel", job_id)
    assert cancel.returncode == 0, cancel.stderr
    assert Job.model_validate_json(cancel.stdout).status == "succeeded"
    assert "already succeeded; nothing to cancel" in cancel.stderr
    assert Job.model_validate_json(cli(bert_stack.url, "status", job_id).stdout).status == "succeeded"


def test_the_same_idempotency_key_gives_the_same_job(bert_stack, tmp_path):
    upload = write_ndjson(tmp_path / "one.jsonl", [{"model": bert_stack.model_id, **REQUESTS[0]}])
    key = f"cli-{time.time_ns()}"
    first = cli(bert_stack.url, "submit", upload, "--idempotency-key", key, "--json")
    second = cli(bert_stack.url, "submit", upload, "--idempotency-key", key)
    assert first.returncode == second.returncode == 0, (first.stderr, second.stderr)
    assert Job.model_validate_json(first.stdout).id == second.stdout.strip()
    assert "already exists" in second.stderr


def test_unknown_jobs_and_server_errors_are_one_line(bert_stack, tmp_path):
    for command in ("status", "results", "cancel"):
        assert_one_line_error(cli(bert_stack.url, command, "no-such-job"), "no job 'no-such-job'", "(HTTP 404)")
    upload = write_ndjson(tmp_path / "r.jsonl", REQUESTS[:1])
    assert_one_line_error(cli(bert_stack.url, "submit", upload, "--model", "nobody/serves-this"), "(HTTP 404)")
    assert_one_line_error(cli(bert_stack.url, "submit", str(tmp_path / "missing.jsonl")), "cannot read")
    nobody = f"http://127.0.0.1:{free_port()}"
    assert_one_line_error(cli(nobody, "list"), f"cannot reach {nobody}")


def test_results_of_a_running_job_are_refused_and_wait_ends_with_1_on_cancel(log_dir, redis_server, tmp_path):
    # no worker consumes this model's queue, so its jobs stay queued until cancelled
    api, waiting = start_api(log_dir, redis_url=redis_server.extra["url"], model="idle/model"), None
    try:
        url, upload = api.extra["url"], write_ndjson(tmp_path / "r.jsonl", REQUESTS)
        submitted = cli(url, "submit", upload, "--model", "idle/model")
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        assert_one_line_error(cli(url, "results", job_id, "-o", str(tmp_path / "out.jsonl")), "(HTTP 409)", job_id)
        assert not (tmp_path / "out.jsonl").exists()

        argv = [sys.executable, "-m", "api.cli", "jobs", "submit", upload, "--model", "idle/model", "--wait"]
        waiting = subprocess.Popen(argv, cwd=REPO_ROOT, env={**child_env(), "RERANK_URL": url},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        waited_id = waiting.stdout.readline().strip()  # printed before the waiting starts
        cancel = cli(url, "cancel", waited_id)
        assert cancel.returncode == 0 and Job.model_validate_json(cancel.stdout).status == "cancelled"
        stdout, stderr = waiting.communicate(timeout=30)
        assert waiting.returncode == 1, stderr
        assert f"job {waited_id} cancelled: 0 completed" in stderr and "Traceback" not in stderr
    finally:
        if waiting is not None and waiting.poll() is None:
            waiting.kill()
        api.stop()


def test_api_key_from_the_option_or_the_environment(log_dir, redis_server, bert_stack, tmp_path):
    api = start_api(
        log_dir, redis_url=redis_server.extra["url"], model="unused", model_id=bert_stack.model_id, api_key="s3cret"
    )
    try:
        url, upload = api.extra["url"], write_ndjson(tmp_path / "r.jsonl", REQUESTS[:3])
        run = cli(url, "submit", upload, "--model", bert_stack.model_id, "--wait", "--api-key", "s3cret")
        assert run.returncode == 0, run.stderr
        job_id = run.stdout.strip()
        from_env = cli(url, "status", job_id, RERANK_API_KEY="s3cret")
        assert from_env.returncode == 0 and Job.model_validate_json(from_env.stdout).status == "succeeded"
        assert_one_line_error(cli(url, "status", job_id), "missing or invalid API key", "(HTTP 401)")
        assert_one_line_error(cli(url, "list", "--api-key", "nope"), "(HTTP 401)")
        assert_one_line_error(cli(url, "submit", upload, "--model", bert_stack.model_id), "(HTTP 401)")
        key_file = tmp_path / "api-key"
        key_file.write_text("s3cret\n")
        from_file = cli(url, "status", job_id, "--api-key-file", str(key_file))
        assert from_file.returncode == 0 and Job.model_validate_json(from_file.stdout).status == "succeeded"
        from_file_env = cli(url, "status", job_id, RERANK_API_KEY_FILE=str(key_file))
        assert from_file_env.returncode == 0, from_file_env.stderr
        assert_one_line_error(cli(url, "list", "--api-key-file", str(tmp_path / "none")), "cannot read the API key file")
        helped = subprocess.run([sys.executable, "-m", "api.cli", "jobs", "status", "--help"], cwd=REPO_ROOT,
                                env=child_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
        assert "(ps)" in " ".join(helped.stdout.split())
    finally:
        api.stop()
