"""Overload drill: 10x the measured capacity for 30 s on loopback; every answer 200, 429 or 503 within 1 s,
bounded memory, normal latency again within 5 s.

1. measures capacity (requests per second of 5 passages x 30 words, MiniLM-L6 on CPU) with a closed loop;
2. sets RERANK_MAX_QUEUED_REQUESTS to BACKLOG_SECONDS of that capacity (an API started afresh), so
   that an admitted request is answered within a second even with the API and the load generator
   taking CPU from the worker;
3. sends `--factor` x capacity requests per second for `--seconds`, open loop;
4. then one request every 0.1 s until latency is back under 1.5x the idle p50.
Prints the figures as JSON. Usage: python -m ops.drills.overload [--factor 10] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time

import httpx

from ops.drills.load import closed_loop, open_loop, ranking_body
from ops.drills.stack import MODEL_ID, drill_stack
from ops.processes import peak_rss_mb, start_api

BACKLOG_SECONDS = 0.35  # the backlog a worker clears in this long is the admission limit


def _latency(url: str, body: dict) -> float:
    started = time.monotonic()
    httpx.post(f"{url}/v1/ranking", json=body, timeout=60).raise_for_status()
    return time.monotonic() - started


def run(args: argparse.Namespace) -> dict:
    with drill_stack(worker_settings={"torch_threads": args.torch_threads}) as stack:
        body = ranking_body(random.Random(9))
        for _ in range(3):
            _latency(stack.url, body)
        idle_p50 = statistics.median(_latency(stack.url, body) for _ in range(10))
        measured = asyncio.run(closed_loop(stack.url, concurrency=8, seconds=args.measure_seconds))
        capacity = measured.counts().get("200", 0) / args.measure_seconds
        limit = max(2, int(capacity * BACKLOG_SECONDS))
        stack.api.stop()
        stack.api = start_api(stack.log_dir, redis_url=stack.redis_url, model=stack.model_dir, model_id=MODEL_ID,
                              max_queued_requests=limit)  # fmt: skip
        rate = args.factor * capacity
        burst = asyncio.run(open_loop(stack.url, rate=rate, seconds=args.seconds))
        burst_ended = time.monotonic()
        recovered_after = None
        while time.monotonic() - burst_ended < 60:
            if _latency(stack.url, body) <= 1.5 * idle_p50:
                recovered_after = time.monotonic() - burst_ended
                break
            time.sleep(0.1)
        counts = burst.counts()
        return {
            "capacity_rps": round(capacity, 1),
            "max_queued_requests": limit,
            "offered_rps": round(rate, 1),
            "seconds": args.seconds,
            "answers": counts,
            "unexpected": sum(n for status, n in counts.items() if status not in ("200", "429", "503")),
            "over_1s": sum(1 for _, _, s in burst.answers if s > 1.0),
            "latency_all": burst.latency(),
            "latency_200": burst.latency("200"),
            "latency_429": burst.latency("429"),
            "idle_p50_ms": round(1000 * idle_p50, 1),
            "recovered_after_s": None if recovered_after is None else round(recovered_after, 2),
            "peak_rss_mb": {"api": round(peak_rss_mb(stack.api.process.pid)),
                            "worker": round(peak_rss_mb(stack.workers[0].process.pid))},  # fmt: skip
            "worker_alive": stack.workers[0].process.poll() is None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factor", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--measure-seconds", type=float, default=10.0)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="the worker's torch threads: 1 leaves a core to the API and the load generator")
    result = run(parser.parse_args())
    print(json.dumps(result, indent=2))
    ok = result["unexpected"] == 0 and result["over_1s"] == 0 and (result["recovered_after_s"] or 99) <= 5
    print("overload drill:", "PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
