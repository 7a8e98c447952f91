"""Scale-out benchmark: 1, 2, 4, 8 CPU workers of one torch thread each against one Redis and one API.

Every worker count gets its own model id, so all of them are up at once and the counts take turns in
every round (a different one first each round; median over rounds). Clients scale with the workers
(`--clients-per-worker`, closed loop) and so do the requests of a round, so that each count is measured
saturated. Goal (issue 6): N workers >= 0.85 x N x one worker, on a machine with at least N + 2 cores.

Usage: python -m ops.bench.scale [--model-dir DIR] [--workers 1,2,4,8] [--repeats 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from ops.bench.rerank import closed_loop, fleet_sender, machine, uptime
from ops.bench.workload import WORKLOADS, make_requests
from ops.models.builder import build_minilm
from tests.processes import Proc, start_api, start_redis, start_worker

EFFICIENCY_GOAL = 0.85


def words_of(model_dir: str) -> list[str]:
    """Whole words of the model's vocabulary (the passages are drawn from them), in a stable order."""
    from transformers import AutoTokenizer

    return sorted(w for w in AutoTokenizer.from_pretrained(model_dir).get_vocab() if w.isalpha() and len(w) > 2)


def run(args: argparse.Namespace) -> dict:
    spec = WORKLOADS["mixed"]
    counts = sorted({int(n) for n in args.workers.split(",")})
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    model_dir = args.model_dir or str(build_minilm(work / "minilm"))
    words = words_of(model_dir)
    result: dict = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "uptime_start": uptime(),
        "machine": machine(), "workload": spec.__dict__, "workers": counts, "repeats": args.repeats,
        "clients_per_worker": args.clients_per_worker, "requests_per_worker": args.requests_per_worker,
        "command": " ".join([Path(sys.executable).name, "-m", "ops.bench.scale", *sys.argv[1:]]),
    }  # fmt: skip
    procs: list[Proc] = []
    try:
        redis_proc = start_redis(work)
        procs.append(redis_proc)
        redis_url = redis_proc.extra["url"]
        for count in counts:
            for _ in range(count):
                procs.append(start_worker(work, redis_url=redis_url, model=model_dir, model_id=f"scale-{count}",
                                          torch_threads=1, timeout=600))  # fmt: skip
        api = start_api(work, redis_url=redis_url, model=model_dir, model_id=f"scale-{counts[0]}", grpc_port=0)
        procs.append(api)
        url = api.extra["url"]

        def measure(count: int, requests) -> dict:
            outcome = closed_loop(requests, args.clients_per_worker * count, fleet_sender(url, f"scale-{count}"))
            return {**outcome, "pairs_per_second": outcome["pairs"] / outcome["seconds"], "load1": os.getloadavg()[0]}

        for count in counts:  # warm-up: every worker's first forward passes
            measure(count, make_requests(spec, words, count=2 * count, seed=999))
        rounds: dict[int, list[dict]] = {count: [] for count in counts}
        for repeat in range(args.repeats):
            shift = repeat % len(counts)
            for count in counts[shift:] + counts[:shift]:
                requests = make_requests(spec, words, count=args.requests_per_worker * count, seed=repeat)
                rounds[count].append(measure(count, requests))
                print(f"round {repeat + 1}/{args.repeats}, {count} worker(s): "
                      f"{rounds[count][-1]['pairs_per_second']:.1f} pairs/s", file=sys.stderr)  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.stop()
    result["rounds"] = {str(count): outcomes for count, outcomes in rounds.items()}
    result["uptime_end"] = uptime()
    result["summary"] = summarize(rounds)
    return result


def summarize(rounds: dict[int, list[dict]]) -> dict:
    """pairs/s per worker count (median), and its efficiency: N workers / (N x one worker), per round."""
    base = min(rounds)
    summary = {}
    for count, outcomes in rounds.items():
        efficiency = statistics.median(
            o["pairs_per_second"] / (b["pairs_per_second"] * count / base) for o, b in zip(outcomes, rounds[base])
        )
        summary[str(count)] = {
            "pairs_per_second": statistics.median(o["pairs_per_second"] for o in outcomes),
            "p50_ms": statistics.median(o["p50_ms"] for o in outcomes),
            "efficiency": efficiency,
            "met": efficiency >= EFFICIENCY_GOAL,
        }
    return summary


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Scale-out: workload `mixed` (24 passages of 10-250 words a request), {result['clients_per_worker']} "
        f"clients and {result['requests_per_worker']} requests a round per worker, {result['repeats']} rounds, "
        f"medians. Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; every worker 1 torch thread.",
        f"Load: start `{result['uptime_start']}`; end `{result['uptime_end']}`.",
        "",
        "| workers | pairs/s | p50 ms / request | efficiency (N workers / N x 1) | >= 0.85 |",
        "|---|---|---|---|---|",
    ]
    for count, row in result["summary"].items():
        lines.append(f"| {count} | {row['pairs_per_second']:.1f} | {row['p50_ms']:.0f} | {row['efficiency']:.2f} | "
                     f"{'yes' if row['met'] else '**no**'} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="a cross-encoder directory (default: build MiniLM-L6)")
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients-per-worker", type=int, default=4)
    parser.add_argument("--requests-per-worker", type=int, default=12, help="requests a round, per worker")
    parser.add_argument("--out", default="ops/bench/results")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # as `rerank-fleet up` runs workers: tokenizers on every core
    print(f"TOKENIZERS_PARALLELISM={os.environ['TOKENIZERS_PARALLELISM']}", flush=True)
    began = time.monotonic()
    result = run(args)
    result["wall_seconds"] = time.monotonic() - began
    result["tokenizers_parallelism"] = os.environ["TOKENIZERS_PARALLELISM"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-scale-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (out / f"{stem}.md").write_text(table + "\n")
    print(table)
    print(f"\nwritten: {out / stem}.json, .md ({result['wall_seconds']:.0f} s, "
          f"TOKENIZERS_PARALLELISM={result['tokenizers_parallelism']})")


if __name__ == "__main__":
    main()
