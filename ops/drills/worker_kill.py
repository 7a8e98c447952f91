"""Worker-kill drill: SIGKILL a worker every few seconds under steady sync load and during a batch job.

Two CPU workers (MiniLM-L6) serve one API. While `--clients` clients send /v1/ranking requests for
`--seconds`, and a batch job of `--job-requests` requests runs, a random worker is SIGKILLed every
`--every` seconds and a fresh one started in its place. Reports the sync answers by status (200 vs
503/504), answers later than their deadline, and the job's results: missing, duplicated or failed lines.
Passes with no 504 (a request whose worker died is sent again; 503 only while no worker is up), no answer
after its deadline, and every job line once.
Usage: python -m ops.drills.worker_kill [--seconds 60] [--every 8] [--clients 4] [--job-requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import threading
import time

from ops.drills.load import closed_loop, finish_job, job_requests, submit_job
from ops.drills.stack import drill_stack

# a chunk is handed to another worker once its lease is this old: well over the longest chunk here
JOB_SETTINGS = {"job_visibility_timeout": 20, "job_chunk_pairs": 64}


def _killer(stack, every: float, stop: threading.Event, kills: list[str]) -> None:
    """Every `every` seconds SIGKILL a random live worker and start a replacement (it loads in the background)."""
    rng = random.Random(5)
    while not stop.wait(every):
        alive = [w for w in stack.workers if w.process.poll() is None]
        if not alive:
            continue
        victim = rng.choice(alive)
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        kills.append(victim.extra["name"])
        threading.Thread(target=stack.add_worker, daemon=True).start()


def run(args: argparse.Namespace) -> dict:
    settings = {"request_timeout": args.deadline, **JOB_SETTINGS}
    with drill_stack(workers=2, api_settings=settings, worker_settings=JOB_SETTINGS) as stack:
        job_id = submit_job(stack.url, job_requests(args.job_requests))
        stop, kills = threading.Event(), []
        killer = threading.Thread(target=_killer, args=(stack, args.every, stop, kills), daemon=True)
        killer.start()
        load = asyncio.run(closed_loop(stack.url, concurrency=args.clients, seconds=args.seconds, timeout=args.deadline + 30))
        stop.set()
        killer.join()
        if len([w for w in stack.workers if w.process.poll() is None]) == 0:
            stack.add_worker()  # the job needs one to finish
        started = time.monotonic()
        job = finish_job(stack.url, job_id, args.job_requests, timeout=600)
        return {
            "seconds": args.seconds,
            "kills": len(kills),
            "sync_answers": load.counts(),
            "sync_over_deadline": sum(1 for _, _, s in load.answers if s > args.deadline + 1),
            "sync_latency_200": load.latency("200"),
            "sync_latency_503": load.latency("503"),
            "job": {**job, "requests": args.job_requests, "waited_after_load_s": round(time.monotonic() - started, 1)},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=8.0, help="seconds between kills")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--job-requests", type=int, default=300, help="requests of 20 passages in the batch job")
    parser.add_argument("--deadline", type=float, default=30.0, help="RERANK_REQUEST_TIMEOUT of the sync requests")
    result = run(parser.parse_args())
    print(json.dumps(result, indent=2))
    job = result["job"]
    ok = (job["status"] == "succeeded" and job["lines"] == job["requests"] and not job["missing"]
          and not job["duplicated"] and not job["errors"] and not job["wrong_custom_id"]
          and result["sync_over_deadline"] == 0 and not result["sync_answers"].get("504"))  # fmt: skip
    print("worker-kill drill:", "PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
