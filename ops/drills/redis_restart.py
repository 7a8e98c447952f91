"""Redis-restart drill: Redis (with AOF) stops under sync load and during a batch job, then comes back.

One CPU worker (MiniLM-L6) and one API on a Redis with appendonly. `--clients` clients send /v1/ranking
requests throughout; a batch job runs; after `--before` seconds Redis is stopped (SIGTERM), kept down
`--down` seconds, and started again on its port from its AOF file. Reports the sync answers by status,
those sent while Redis was shutting down, the 503s once it had exited and how fast they came, the time
from Redis's return to the first 200, and the job's results (every line once). API and worker are never
restarted.
Usage: python -m ops.drills.redis_restart [--before 10] [--down 10] [--after 20] [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time

from ops.drills.load import Outcomes, closed_loop, finish_job, job_requests, submit_job
from ops.drills.stack import drill_stack
from ops.processes import restart_redis

JOB_SETTINGS = {"job_visibility_timeout": 20, "job_chunk_pairs": 64}


def run(args: argparse.Namespace) -> dict:
    with drill_stack(appendonly=True, api_settings=JOB_SETTINGS, worker_settings=JOB_SETTINGS) as stack:
        job_id = submit_job(stack.url, job_requests(args.job_requests))
        marks: dict[str, float] = {}

        def outage() -> None:
            time.sleep(args.before)
            marks["stopping"] = time.monotonic()
            stack.redis.stop()
            marks["down"] = time.monotonic()  # Redis has exited (SIGTERM: it syncs its AOF first)
            time.sleep(args.down)
            stack.redis = restart_redis(stack.redis)
            marks["up"] = time.monotonic()

        thread = threading.Thread(target=outage, daemon=True)
        thread.start()
        seconds = args.before + args.down + args.after
        load = asyncio.run(closed_loop(stack.url, concurrency=args.clients, seconds=seconds, timeout=60))
        thread.join()
        down = [(sent, status, s) for sent, status, s in load.answers if marks["down"] <= sent < marks["up"]]
        stopping = Outcomes([a for a in load.answers if marks["stopping"] <= a[0] < marks["down"]])
        after = sorted((sent, status) for sent, status, _ in load.answers if sent >= marks["up"])
        first_ok = next((sent for sent, status in after if status == "200"), None)
        job = finish_job(stack.url, job_id, args.job_requests, timeout=600)
        return {
            "down_s": args.down,
            "redis_shutdown_s": round(marks["down"] - marks["stopping"], 2),
            "sent_while_redis_shut_down": {"by_status": stopping.counts(), **stopping.latency()},
            "sync_answers": load.counts(),
            "during_outage": {
                "answers": len(down),
                "503": sum(status == "503" for _, status, _ in down),
                "max_ms": round(1000 * max((s for _, _, s in down), default=0), 1),
                "by_status": Outcomes(down).counts(),
                # the slowest answers: seconds after Redis went down that they were sent, status, milliseconds
                "slowest": [(round(sent - marks["down"], 2), status, round(1000 * s)) for sent, status, s in
                            sorted(down, key=lambda answer: -answer[2])[:5]],  # fmt: skip
            },
            "recovered_after_s": None if first_ok is None else round(first_ok - marks["up"], 2),
            "job": {**job, "requests": args.job_requests},
            "worker_alive": stack.workers[0].process.poll() is None,
            "api_alive": stack.api.process.poll() is None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=float, default=10.0)
    parser.add_argument("--down", type=float, default=10.0)
    parser.add_argument("--after", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--job-requests", type=int, default=200)
    result = run(parser.parse_args())
    print(json.dumps(result, indent=2))
    job, outage = result["job"], result["during_outage"]
    ok = (job["status"] == "succeeded" and job["lines"] == job["requests"] and not job["missing"]
          and not job["duplicated"] and not job["errors"] and outage["max_ms"] < 1000
          and result["recovered_after_s"] is not None)  # fmt: skip
    print("redis-restart drill:", "PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
