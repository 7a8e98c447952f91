"""Batch-job uploads against the limits of issue 26 (Hardening II): nesting depth, what a refused upload leaves
in Redis, every stored byte counted against its caller, custom_id's length, the spool of requests read before
the job's model, and the body types taken. Each upload goes to a real API process over a real Redis."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
import redis as redis_py

from shared.schemas import ErrorEnvelope
from tests.integration.jobs.test_upload_hardening import MODEL_ID, RssSampler
from tests.integration.jobs.test_upload_hardening import upload_redis as limits_redis  # noqa: F401 (a fixture)
from tests.processes import start_api
# callers of their own, so that each test's jobs and bytes are counted apart
KEYS = ("nesting", "leaks-1", "leaks-2", "leaks-3", "bad-lines", "long-ids", "spool", "types", "windows")
NDJSON = {"content-type": "application/x-ndjson"}
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def limits_api(log_dir, limits_redis):
    api = start_api(log_dir, redis_url=limits_redis.extra["url"], model="unused", model_id=MODEL_ID,
                    job_chunk_pairs=5, job_max_staged_bytes=400_000, job_max_active=1000,
                    job_max_spool_bytes=1024 * 1024, api_key=",".join(KEYS))  # fmt: skip
    yield api
    api.stop()


def _request(i: int, passages: int = 5) -> dict:
    return {"custom_id": f"r{i}", "query": {"text": f"query number {i}"},
            "passages": [{"text": f"passage {j} of request {i} " + "word " * 40} for j in range(passages)]}  # fmt: skip


def _as(key: str, headers: dict) -> dict:
    return {**headers, "authorization": f"Bearer {key}"}


def _job_keys(redis_url: str) -> set[bytes]:
    return set(redis_py.Redis.from_url(redis_url).scan_iter(match="rerank:job:*"))


def _message(response: httpx.Response) -> str:
    return ErrorEnvelope.model_validate(response.json()).error.message


# --- nesting -------------------------------------------------------------------------------------------------------

DEPTH = 12_000  # a 24 KB body; today's parser grew the API by hundreds of MiB on it


@pytest.mark.parametrize("under", ["model", "requests"])  # model first: a fresh API shows its growth
def test_a_deeply_nested_json_upload_is_refused_without_memory_growth(limits_api, under):
    nested = b"[" * DEPTH + b"]" * DEPTH
    if under == "requests":
        body = b'{"model": "' + MODEL_ID.encode() + b'", "requests": [' + nested + b"]}"
    else:
        body = b'{"model": ' + nested + b', "requests": [' + json.dumps(_request(0)).encode() + b"]}"
    with RssSampler(limits_api.process.pid) as rss:
        response = httpx.post(limits_api.extra["url"] + "/v1/ranking/jobs", content=body, headers=_as("nesting", JSON),
                              timeout=120)  # fmt: skip
    growth = rss.peak - rss.baseline
    print(f"nested under {under}: {response.status_code}, API RSS {rss.baseline:.0f} -> {rss.peak:.0f} MiB")
    assert response.status_code == 422, response.text[:300]
    # under model, its first `[` is already wrong; under requests, the 17th level is
    assert _message(response) == ("model must be a string" if under == "model" else
                                  "the body is nested more than 16 levels deep")  # fmt: skip
    assert growth < 30, f"API RSS grew by {growth:.0f} MiB on a {len(body)} byte body"


def test_an_ndjson_line_nested_too_deep_is_that_requests_error_line(limits_api):
    url = limits_api.extra["url"] + "/v1/ranking/jobs"
    for depth in (20, 5000):  # past the limit; past Python's recursion limit
        line = b'{"query": {"text": "q"}, "passages": ' + b"[" * depth + b"]" * depth + b"}"
        response = httpx.post(url, params={"model": MODEL_ID}, content=line + b"\n", headers=_as("nesting", NDJSON),
                              timeout=30)  # fmt: skip
        assert response.status_code == 202, response.text[:300]
        job = response.json()
        assert job["status"] == "failed" and job["progress"]["failed_requests"] == 1
        results = httpx.get(f"{url}/{job['id']}/results", headers=_as("nesting", {}), timeout=30).text.splitlines()
        assert len(results) == 1 and "nested" in json.loads(results[0])["error"]["message"], results


# --- what a refused upload leaves, and what a caller may store -----------------------------------------------------


def test_a_refused_upload_leaves_no_job_keys_in_redis(limits_api, limits_redis):
    url, redis_url = limits_api.extra["url"] + "/v1/ranking/jobs", limits_redis.extra["url"]
    before = _job_keys(redis_url)
    over_cap = json.dumps({"model": MODEL_ID, "requests": [_request(i) for i in range(400)]}).encode()
    refused = httpx.post(url, content=over_cap, headers=_as("leaks-1", JSON), timeout=60)
    assert refused.status_code == 429 and "RERANK_JOB_MAX_STAGED_BYTES" in _message(refused)
    broken = json.dumps({"model": MODEL_ID, "requests": [_request(i) for i in range(100)]}).encode()[:-2] + b"}}oops"
    refused = httpx.post(url, content=broken, headers=_as("leaks-2", JSON), timeout=60)
    assert refused.status_code == 422, refused.text[:300]
    # a client that leaves half-way through its upload
    body = json.dumps({"model": MODEL_ID, "requests": [_request(i) for i in range(200)]}).encode()
    with socket.create_connection(("127.0.0.1", int(url.split(":")[2].split("/")[0])), timeout=10) as sock:
        sock.sendall(b"POST /v1/ranking/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer leaks-3\r\nContent-Length: %d\r\n\r\n" % len(body) + body[: len(body) // 2])
        time.sleep(1.0)  # staged chunks of the first half
    deadline = time.monotonic() + 10
    while _job_keys(redis_url) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _job_keys(redis_url) - before
    assert not left, f"{len(left)} job keys of refused uploads remain, e.g. {sorted(left)[:3]}"


def test_uploads_of_bad_lines_reach_the_callers_cap(limits_api, limits_redis):
    url, headers = limits_api.extra["url"] + "/v1/ranking/jobs", _as("bad-lines", NDJSON)
    bad = b"".join(json.dumps({"custom_id": f"{i:08d}" + "x" * 400, "query": "not an object"}).encode() + b"\n"
                   for i in range(200))  # fmt: skip
    statuses = []
    for _ in range(20):  # 20 x 90 KB of refused lines, each stored twice, against a cap of 400 KB
        statuses.append(httpx.post(url, params={"model": MODEL_ID}, content=bad, headers=headers, timeout=30))
        if statuses[-1].status_code != 202:
            break
    codes = [r.status_code for r in statuses]
    print("statuses of uploads of bad lines:", codes)
    assert codes[-1] == 429 and "RERANK_JOB_MAX_STAGED_BYTES" in _message(statuses[-1]), codes
    assert len(codes) <= 6, codes


def test_an_over_long_custom_id_is_refused_and_never_stored(limits_api):
    url = limits_api.extra["url"] + "/v1/ranking/jobs"
    lines = [{**_request(0), "custom_id": "c" * 10_000}, {"custom_id": "d" * 10_000, "query": 1}]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    response = httpx.post(url, params={"model": MODEL_ID}, content=body, headers=_as("long-ids", NDJSON), timeout=30)
    assert response.status_code == 202, response.text[:300]
    job = response.json()
    assert job["status"] == "failed" and job["progress"]["failed_requests"] == 2
    results = httpx.get(f"{url}/{job['id']}/results", headers=_as("long-ids", {}), timeout=30).text.splitlines()
    assert all(len(line) < 1000 for line in results), [line[:100] for line in results]
    assert all("custom_id" in json.loads(line)["error"]["message"] for line in results), results


# --- the spool of requests read before the job's model -------------------------------------------------------------


def test_a_spool_past_its_cap_is_refused(limits_api):
    requests = json.dumps([_request(i) for i in range(2000)])  # about 3 MiB before the model
    body = ('{"requests": ' + requests + ', "model": "' + MODEL_ID + '"}').encode()
    response = httpx.post(limits_api.extra["url"] + "/v1/ranking/jobs", content=body, headers=_as("spool", JSON),
                          timeout=60)  # fmt: skip
    assert response.status_code == 413, response.text[:300]
    assert "RERANK_JOB_MAX_SPOOL_BYTES" in _message(response)


def test_a_caller_at_its_limit_is_refused_before_its_upload_is_read(log_dir, limits_redis):
    key = "busy"
    api = start_api(log_dir, redis_url=limits_redis.extra["url"], model="unused", model_id=MODEL_ID, job_max_active=1,
                    api_key=key)  # fmt: skip
    try:
        job, again = {"model": MODEL_ID, "requests": [_request(0)]}, _as(key, {"idempotency-key": "first"})
        first = httpx.post(api.extra["url"] + "/v1/ranking/jobs", json=job, headers=again, timeout=30)
        assert first.status_code == 202, first.text
        port = int(api.extra["url"].rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            # requests before the model: all of it would be spooled; only the first few KB are ever sent
            sock.sendall(b"POST /v1/ranking/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: 100000000\r\n\r\n"
                         b'{"requests": [' + json.dumps(_request(1)).encode())  # fmt: skip
            answer = _read_answer(sock, 5.0)
        assert answer.startswith(b"HTTP/1.1 429"), answer[:200]
        assert b"RERANK_JOB_MAX_ACTIVE" in answer
        retried = httpx.post(api.extra["url"] + "/v1/ranking/jobs", json=job, headers=again, timeout=30)
        assert retried.status_code == 200 and retried.json()["id"] == first.json()["id"]  # the same job, not a 429
    finally:
        api.stop()


def _read_answer(sock: socket.socket, seconds: float) -> bytes:
    """What the server sent within `seconds`, up to its whole answer (headers and a Content-Length body)."""
    answer, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        head, _, body = answer.partition(b"\r\n\r\n")
        length = [line.split(b":")[1] for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
        if length and len(body) >= int(length[0]):
            break
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            piece = sock.recv(65536)
        except socket.timeout:
            break
        if not piece:
            break
        answer += piece
    return answer or b"(no answer within %.0f s)" % seconds


# --- body types ----------------------------------------------------------------------------------------------------


def test_a_job_without_a_content_type_is_refused(limits_api):
    body = json.dumps({"model": MODEL_ID, "requests": [_request(0)]}).encode()
    request = httpx.Request("POST", limits_api.extra["url"] + "/v1/ranking/jobs", content=body, headers=_as("types", {}))
    assert "content-type" not in request.headers  # httpx sends none for bytes
    response = httpx.Client(timeout=30).send(request)
    assert response.status_code == 415, response.text[:300]
    assert "application/json" in _message(response) and "application/x-ndjson" in _message(response)


# --- chunks sized by windows ---------------------------------------------------------------------------------------


def test_chunks_are_sized_by_the_windows_their_requests_may_need(limits_api, limits_redis):
    # RERANK_JOB_CHUNK_PAIRS=5: one passage of up to 5 windows is a chunk's worth of pairs
    requests = [{**_request(i, passages=1), "max_chunks_per_passage": 5} for i in range(4)]
    response = httpx.post(limits_api.extra["url"] + "/v1/ranking/jobs", json={"model": MODEL_ID, "requests": requests},
                          headers=_as("windows", {}), timeout=30)  # fmt: skip
    assert response.status_code == 202, response.text[:300]
    job = redis_py.Redis.from_url(limits_redis.extra["url"]).hgetall(f"rerank:job:{{{response.json()['id']}}}")
    assert int(job[b"chunks_total"]) == 4, job


# --- a finished job's results count too ----------------------------------------------------------------------------


def test_the_results_of_finished_jobs_count_against_their_caller(log_dir, bert_stack):
    # a worker scores the job; its result lines (about 40 bytes a passage) outweigh its request (4 bytes a passage)
    api = start_api(log_dir, redis_url=bert_stack.redis_url, model="unused", model_id=bert_stack.model_id,
                    job_max_staged_bytes=4000, api_key="results-count")  # fmt: skip
    try:
        url, headers = api.extra["url"] + "/v1/ranking/jobs", _as("results-count", {})
        body = {"model": bert_stack.model_id, "requests": [{"query": {"text": "q"}, "passages": [{"text": "a"}] * 100}]}
        first = httpx.post(url, json=body, headers=headers, timeout=30)
        assert first.status_code == 202, first.text
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/{first.json()['id']}", headers=headers, timeout=10).json()["status"] != "succeeded":
            assert time.monotonic() < deadline, "the job did not finish"
            time.sleep(0.2)
        lines = httpx.get(f"{url}/{first.json()['id']}/results", headers=headers, timeout=30).content
        stored = redis_py.Redis.from_url(bert_stack.redis_url).hget(f"rerank:job:{{{first.json()['id']}}}", "staged_bytes")
        assert int(stored) >= len(lines) - 1, (int(stored), len(lines))  # the result line, less its newline
        second = httpx.post(url, json=body, headers=headers, timeout=30)
        assert second.status_code == 429 and "RERANK_JOB_MAX_STAGED_BYTES" in _message(second), (int(stored), second.text)
    finally:
        api.stop()
