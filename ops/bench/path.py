"""Where a lone request's time goes on its way through the fleet, and what 64 concurrent requests gain.

Starts redis-server, one CPU worker and the API (as the other benchmarks do), with a tiny BERT by default
so that the forward pass is small next to the path. Then:
- `--lone` requests of one passage, one at a time, each timed by the client and split by Celery's own task
  events (one clock: one machine): client to `task-sent` (HTTP, validation, admission, publish), sent to
  `task-received` (Redis, the worker's consumer), received to `task-started`, started to `task-succeeded`
  (the task body: claim, tokenize, micro-batcher, forward pass, result stored), succeeded to the client
  (result published, the API wakes, HTTP back);
- 64 such requests sent at once (httpx async) against the same 64 one at a time, `--repeats` times, with
  the CPU time each process spent on the concurrent ones, per request (from /proc: Linux only; `bench`
  is this process: the httpx client and the task-event listener).

Usage: python -m ops.bench.path [--model-dir DIR] [--lone 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
from celery import Celery

from ops.models.builder import build_bert
from ops.processes import start_api, start_redis, start_worker

MODEL_ID = "path-bench"
BODY = {"model": MODEL_ID, "query": {"text": "what is the capital of france"},
        "passages": [{"text": "paris is the capital and most populous city of france"}]}  # fmt: skip
STAGES = [("client_to_sent", None, "task-sent"), ("sent_to_received", "task-sent", "task-received"),
          ("received_to_started", "task-received", "task-started"),
          ("started_to_succeeded", "task-started", "task-succeeded"), ("succeeded_to_client", "task-succeeded", None)]  # fmt: skip


def collect_events(redis_url: str, events: dict[str, dict[str, float]]) -> None:
    """Record every task event's timestamp by task id and type (runs until the process ends)."""
    app = Celery(broker=redis_url)

    def note(event: dict) -> None:
        events.setdefault(event.get("uuid", ""), {})[event["type"]] = event["timestamp"]

    with app.connection() as connection:
        app.events.Receiver(connection, handlers={"*": note}).capture(limit=None, timeout=None, wakeup=True)


def lone_requests(url: str, count: int, events: dict[str, dict[str, float]]) -> dict:
    with httpx.Client(timeout=30) as client:
        for _ in range(5):
            client.post(f"{url}/v1/ranking", json=BODY).raise_for_status()
        spans = []
        for _ in range(count):
            time.sleep(0.05)
            began = time.time()
            client.post(f"{url}/v1/ranking", json=BODY).raise_for_status()
            spans.append((began, time.time()))
    time.sleep(1)  # the last events arrive
    stages: dict[str, list[float]] = {name: [] for name, _, _ in STAGES}
    stages["total"] = []
    for marks in events.values():
        sent = marks.get("task-sent")
        span = next(((a, b) for a, b in spans if sent is not None and a <= sent <= b), None)
        if span is None or not all(k in marks for k in ("task-received", "task-started", "task-succeeded")):
            continue
        marks = {**marks, None: None}
        for name, start, end in STAGES:
            stages[name].append((marks[end] if end else span[1]) - (marks[start] if start else span[0]))
        stages["total"].append(span[1] - span[0])
    return {"requests": len(stages["total"]),
            "p50_ms": {name: round(1000 * statistics.median(v), 2) for name, v in stages.items() if v}}  # fmt: skip


async def concurrent_seconds(url: str, count: int) -> float:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=count)) as client:
        began = time.perf_counter()
        responses = await asyncio.gather(*(client.post(f"{url}/v1/ranking", json=BODY) for _ in range(count)))
        elapsed = time.perf_counter() - began
    for response in responses:
        response.raise_for_status()
    return elapsed


def cpu_seconds(pid: int | None) -> float:
    """User plus system CPU time of a process so far (None: this one)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def concurrency(url: str, repeats: int, pids: dict[str, int | None]) -> dict:
    rounds = []
    with httpx.Client(timeout=30) as client:
        for _ in range(repeats):
            began = time.perf_counter()
            for _ in range(64):
                client.post(f"{url}/v1/ranking", json=BODY).raise_for_status()
            sequential = 64 / (time.perf_counter() - began)
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            concurrent = 64 / asyncio.run(concurrent_seconds(url, 64))
            cpu_ms = {name: round(1000 * (cpu_seconds(pid) - before[name]) / 64, 2) for name, pid in pids.items()}
            rounds.append({"sequential_rps": round(sequential, 1), "concurrent_rps": round(concurrent, 1),
                           "ratio": round(concurrent / sequential, 2), "cpu_ms_per_request": cpu_ms})  # fmt: skip
    return {"rounds": rounds, "ratio": statistics.median(r["ratio"] for r in rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="a cross-encoder directory (default: a tiny BERT built here)")
    parser.add_argument("--lone", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the worker")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-path-"))
    model_dir = args.model_dir or str(build_bert(work / "tiny-bert", seed=1))
    redis = start_redis(work)
    procs = [redis]
    try:
        worker = start_worker(work, redis_url=redis.extra["url"], model=model_dir, model_id=MODEL_ID,
                              torch_threads=args.threads)  # fmt: skip
        procs.append(worker)
        api = start_api(work, redis_url=redis.extra["url"], model=model_dir, model_id=MODEL_ID, grpc_port=0)
        procs.append(api)
        pids = {"api": api.process.pid, "worker": worker.process.pid, "redis": redis.process.pid, "bench": None}
        events: dict[str, dict[str, float]] = {}
        threading.Thread(target=collect_events, args=(redis.extra["url"], events), daemon=True).start()
        time.sleep(1)
        result = {"model_dir": model_dir, "lone": lone_requests(api.extra["url"], args.lone, events),
                  "concurrent_64": concurrency(api.extra["url"], args.repeats, pids)}  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
