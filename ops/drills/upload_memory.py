"""Upload-memory drill: the API's peak resident memory while a large batch job is uploaded, JSON and NDJSON,
and while a JSON job nested `[[[...]]]` deep under `requests` (10 MiB of brackets) is refused.

Starts a redis-server and one API process (a model announced by a worker that consumes nothing, so the job
stays staged), streams a job of `--mib` MiB to it (requests of 5 passages x 40 words; the body is generated
as it is sent, so the drill's own memory stays small), samples the API's RSS every 10 ms, and prints the
baseline, the peak, the time taken and the API's CPU seconds (steadier than the time on a busy machine).
`--repo` measures the API of another checkout (a baseline); the drill's own code sends the uploads. Passes when the jobs are taken (202) and the nested one refused (422),
each with a peak under `--max-growth-mib` above the baseline.
Usage: python -m ops.drills.upload_memory [--mib 256] [--kinds json,ndjson,nested] [--max-growth-mib 150] [--repo DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import redis as redis_py

from ops.processes import REPO_ROOT, silent_worker, start_api, start_redis

MODEL_ID = "upload-memory/silent"


def _request(i: int) -> bytes:
    return json.dumps({"custom_id": f"r{i}", "query": {"text": f"query number {i}"},
                       "passages": [{"text": f"passage {j} of request {i} " + "word " * 40} for j in range(5)]}).encode()  # fmt: skip


NESTED_BYTES = 10 * 1024 * 1024
EXPECTED_STATUS = {"json": 202, "ndjson": 202, "nested": 422}


def nested_upload() -> Iterator[bytes]:
    """A JSON job whose one request is NESTED_BYTES of brackets, half `[`, half `]`, in pieces of 1 MiB."""
    yield json.dumps({"model": MODEL_ID}).encode()[:-1] + b', "requests": ['
    for bracket in (b"[", b"]"):
        for _ in range(NESTED_BYTES // 2 // (1 << 20)):
            yield bracket * (1 << 20)
    yield b"]}"


def upload(kind: str, size: int) -> Iterator[bytes]:
    """About `size` bytes of a job, in pieces of about 1 MiB."""
    if kind == "nested":
        yield from nested_upload()
        return
    sent, i, piece = 0, 0, bytearray()
    if kind == "json":
        piece += json.dumps({"model": MODEL_ID, "truncate": "END"}).encode()[:-1] + b', "requests": ['
    while sent + len(piece) < size - 4096:
        line = _request(i)
        if kind == "json":
            piece += (b"," if i else b"") + line
        else:
            piece += line[:-1] + b', "model": "' + MODEL_ID.encode() + b'"}\n'
        i += 1
        if len(piece) >= 1 << 20:
            sent += len(piece)
            yield bytes(piece)
            piece.clear()
    yield bytes(piece) + (b"]}" if kind == "json" else b"")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def measure(api_url: str, pid: int, kind: str, size: int) -> dict:
    baseline, peak, stop = _rss_mib(pid), [0.0], threading.Event()
    cpu_before = _cpu_seconds(pid)

    def sample() -> None:
        while not stop.wait(0.01):
            peak[0] = max(peak[0], _rss_mib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    content_type = "application/x-ndjson" if kind == "ndjson" else "application/json"
    response = httpx.post(api_url + "/v1/ranking/jobs", content=upload(kind, size),
                          headers={"content-type": content_type}, timeout=1800)  # fmt: skip
    seconds = time.monotonic() - started
    cpu = _cpu_seconds(pid) - cpu_before
    stop.set()
    sampler.join()
    job = response.json()
    if response.status_code >= 400:
        print(f"{kind}: {response.status_code} {job['error']['message']}")
    return {"kind": kind, "status": response.status_code, "requests": job.get("progress", {}).get("total_requests"),
            "seconds": round(seconds, 1), "api_cpu_seconds": round(cpu, 1), "rss_baseline_mib": round(baseline), "rss_peak_mib": round(peak[0]),
            "rss_growth_mib": round(peak[0] - baseline)}  # fmt: skip


def run(args: argparse.Namespace) -> list[dict]:
    size = args.mib * 1024 * 1024
    log_dir = Path(tempfile.mkdtemp(prefix="rerank-drill-"))
    redis = start_redis(log_dir)
    try:
        with silent_worker(redis.extra["url"], MODEL_ID):
            api = start_api(log_dir, redis_url=redis.extra["url"], model="unused", model_id=MODEL_ID, repo=args.repo,
                            job_max_upload_bytes=size, job_max_requests=1_000_000,
                            job_max_staged_bytes=2 * size)  # fmt: skip
            try:
                results = []
                for kind in args.kinds.split(","):
                    results.append(measure(api.extra["url"], api.process.pid, kind, size))
                    forget_jobs(redis.extra["url"])
                return results
            finally:
                api.stop()
    finally:
        redis.stop()
        shutil.rmtree(log_dir, ignore_errors=True)


def forget_jobs(url: str) -> None:
    """Drop the staged job, so that the next upload starts from the same Redis (and caller limits)."""
    client = redis_py.Redis.from_url(url)
    for key in client.scan_iter(match="rerank:job*"):
        client.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--kinds", default="json,ndjson,nested")
    parser.add_argument("--max-growth-mib", type=float, default=150.0)
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="the checkout whose API is measured")
    args = parser.parse_args()
    results = run(args)
    print(json.dumps(results, indent=2))
    ok = all(r["status"] == EXPECTED_STATUS[r["kind"]] and r["rss_growth_mib"] < args.max_growth_mib for r in results)
    print("upload-memory drill:", "PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
