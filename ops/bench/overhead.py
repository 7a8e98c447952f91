"""What the fleet costs on top of the model: a near-free cross-encoder, the fleet over HTTP against an in-process loop.

The model (`ops.models.builder near-free`: BERT, hidden 32, one layer) scores a pair in next to no time, as
a GPU scores MiniLM, so what is measured is the path: HTTP, Redis, Celery, tokenizing, batching, results.

Variants, in alternating order every round, on the same requests (`--requests` of `--passages` short
passages, sent by `--clients` concurrent HTTP clients in a closed loop; bodies serialised once, up front):
- `raw`: a careful in-process loop, one request after another: the fast tokenizer over the request's pairs
  (truncated to 512 tokens), pairs sorted by length, token-budget batches (`--budget`), padded forward
  passes of the transformers model, logits put back in request order;
- `fleet`: this checkout's fleet (redis-server, one worker, uvicorn) over HTTP;
- `baseline`: the same fleet from another checkout (`--baseline-repo DIR`, e.g. a git worktree of an
  earlier commit), on the same Redis, for before/after figures from one run.

For each fleet it reports pairs/s, the ratio to `raw`, and the CPU time per pair of each process (from
/proc: `worker` is the worker's Celery process, `engine` its engine process where it has one), and what
both spent outside forward passes (the engine's own batch statistics give their time): `worker_outside_forward_us`;
for `raw`, the CPU time per pair its tokenizer took (`tokenize_cpu_us`), the least a worker must spend too.

Usage: python -m ops.bench.overhead [--baseline-repo DIR] [--repeats 3] [--requests 48] [--worker-threads N]
       [--worker-forward auto|on|off] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ops.bench.jobs import vocabulary
from ops.bench.report import write_json
from ops.bench.workload import token_budget_batches
from ops.models.builder import build_bert
from ops.processes import REPO_ROOT, Proc, start_api, start_redis, start_worker, worker_report

MAX_LENGTH = 512


def make_bodies(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """`args.requests` requests: an 8-word query and `args.passages` passages of 8-24 words."""
    words, rng = vocabulary(), random.Random(args.seed)
    return [
        (" ".join(rng.choices(words, k=8)),
         [" ".join(rng.choices(words, k=rng.randint(8, 24))) for _ in range(args.passages)])
        for _ in range(args.requests)
    ]  # fmt: skip


class InProcessLoop:
    """The fast tokenizer and the transformers model in this process, as a careful user would write it."""

    def __init__(self, model_dir: str, budget: int) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir).backend_tokenizer
        self.tokenizer.enable_truncation(MAX_LENGTH, strategy="only_second")
        self.tokenizer.no_padding()
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.budget = budget
        self.tokenize_cpu_seconds = 0.0  # this process's CPU time in the tokenizer (all its threads)

    def score(self, query: str, passages: list[str]) -> np.ndarray:
        started = time.process_time()
        encodings = self.tokenizer.encode_batch([(query, passage) for passage in passages])
        self.tokenize_cpu_seconds += time.process_time() - started
        lengths = [len(encoding.ids) for encoding in encodings]
        logits = np.empty(len(passages), dtype=np.float32)
        for batch in token_budget_batches(lengths, self.budget):
            width = max(lengths[i] for i in batch)
            ids, types, mask = (np.zeros((len(batch), width), dtype=np.int64) for _ in range(3))
            for row, i in enumerate(batch):
                n = lengths[i]
                ids[row, :n], types[row, :n], mask[row, :n] = encodings[i].ids, encodings[i].type_ids, 1
            with torch.inference_mode():
                out = self.model(input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types),
                                 attention_mask=torch.from_numpy(mask)).logits[:, 0]  # fmt: skip
            logits[batch] = out.numpy()
        return logits

    def run(self, bodies: list[tuple[str, list[str]]]) -> dict:
        started, tokenizing = time.perf_counter(), self.tokenize_cpu_seconds
        for query, passages in bodies:
            self.score(query, passages)
        seconds = time.perf_counter() - started
        pairs = sum(len(p) for _, p in bodies)
        tokenize_us = 1e6 * (self.tokenize_cpu_seconds - tokenizing) / pairs
        return {"seconds": seconds, "pairs": pairs, "pairs_per_s": pairs / seconds,
                "tokenize_cpu_us": round(tokenize_us, 1)}


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Fleet:
    """One fleet's worker and API (from `repo`) on a shared Redis, sent requests by `clients` HTTP clients."""

    def __init__(self, name: str, repo: Path, work: Path, redis_url: str, model_dir: str, args: argparse.Namespace):
        self.name, self.redis_url, self.model_id = name, redis_url, f"overhead-{name}"
        settings = {"torch_threads": args.worker_threads} if args.worker_threads else {}
        if args.worker_forward:
            settings["packed_forward"] = args.worker_forward
        self.worker = start_worker(work, redis_url=redis_url, model=model_dir, model_id=self.model_id, repo=repo,
                                   log_level="warning", **settings)  # fmt: skip
        self.api = start_api(work, redis_url=redis_url, model=model_dir, model_id=self.model_id, repo=repo,
                             grpc_port=0, log_level="warning")  # fmt: skip

    def stop(self) -> None:
        self.api.stop()
        self.worker.stop()

    def forward_seconds(self) -> float:
        """Time in forward passes: the engine thread's CPU time where the worker reports it, else wall time."""
        stats = worker_report(self.redis_url, self.worker.extra["name"])["batch_stats"]
        return stats.get("forward_cpu_seconds", stats["forward_seconds"])

    def pids(self) -> dict[str, int]:
        """The worker's processes: its Celery process, and its engine process where it has one."""
        engine = worker_report(self.redis_url, self.worker.extra["name"]).get("engine_pid")
        return {"worker": self.worker.process.pid, "api": self.api.process.pid, **({"engine": engine} if engine else {})}

    def payloads(self, bodies: list[tuple[str, list[str]]]) -> list[bytes]:
        return [
            json.dumps({"model": self.model_id, "query": {"text": query}, "truncate": "END",
                        "passages": [{"text": passage} for passage in passages]}).encode()
            for query, passages in bodies
        ]  # fmt: skip

    def run(self, payloads: list[bytes], clients: int, pids: dict[str, int]) -> dict:
        todo = list(reversed(payloads))
        lock, errors = threading.Lock(), []

        def client() -> None:
            with httpx.Client(base_url=self.api.extra["url"], timeout=120) as http:
                while True:
                    with lock:
                        if not todo:
                            return
                        body = todo.pop()
                    response = http.post("/v1/ranking", content=body, headers={"Content-Type": "application/json"})
                    if response.status_code != 200:
                        errors.append(response.text[:200])

        threads = [threading.Thread(target=client) for _ in range(clients)]
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        forward_before = self.forward_seconds()
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        forward = self.forward_seconds() - forward_before
        if errors:
            raise RuntimeError(f"{self.name}: {len(errors)} request(s) failed, first: {errors[0]}")
        return {"seconds": seconds, "cpu_seconds": cpu, "forward_seconds": forward}


def summarize(run: dict, pairs: int, raw_pairs_per_s: float) -> dict:
    per_pair = {f"{name}_cpu_us": round(1e6 * value / pairs, 1) for name, value in run["cpu_seconds"].items()}
    return {
        "pairs_per_s": round(pairs / run["seconds"], 1),
        "fleet_over_raw": round(pairs / run["seconds"] / raw_pairs_per_s, 3),
        **per_pair,
        "worker_forward_us": round(1e6 * run["forward_seconds"] / pairs, 1),
        "worker_outside_forward_us": round(
            1e6 * (run["cpu_seconds"]["worker"] + run["cpu_seconds"].get("engine", 0) - run["forward_seconds"]) / pairs, 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-repo", type=Path, help="another checkout whose fleet is measured beside this one")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--passages", type=int, default=512)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--budget", type=int, default=2048, help="the in-process loop's padded tokens per pass")
    parser.add_argument("--threads", type=int, help="torch threads of the in-process loop (default: torch's own "
                        "choice, the cores)")
    parser.add_argument("--worker-threads", type=int, help="RERANK_TORCH_THREADS of the workers (default: their own "
                        "default); with 1, `worker_outside_forward_us` is exact")
    parser.add_argument("--worker-forward", choices=["auto", "on", "off"], help="RERANK_PACKED_FORWARD of the "
                        "workers (default: theirs); `off` gives them the in-process loop's forward, transformers'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="directory for the JSON result")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # the loop and the workers tokenize alike, on every core
    print(f"TOKENIZERS_PARALLELISM={os.environ['TOKENIZERS_PARALLELISM']}", flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    model_dir = str(build_bert(work / "near-free", seed=1, layers=1))
    bodies = make_bodies(args)
    pairs = sum(len(p) for _, p in bodies)
    raw = InProcessLoop(model_dir, args.budget)
    raw.run(bodies[:2])  # warm up
    redis = start_redis(work)
    fleets: list[Fleet] = []
    rounds: list[dict] = []
    try:
        checkouts = [("fleet", REPO_ROOT)] + ([("baseline", args.baseline_repo.resolve())] if args.baseline_repo else [])
        fleets = [Fleet(name, repo, work, redis.extra["url"], model_dir, args) for name, repo in checkouts]
        payloads = {fleet.name: fleet.payloads(bodies) for fleet in fleets}
        for fleet in fleets:  # warm up: connections, first passes
            fleet.run(payloads[fleet.name][: args.clients], args.clients, {})
        for number in range(args.repeats):
            result = {"raw": raw.run(bodies)}
            order = fleets if number % 2 == 0 else list(reversed(fleets))
            for fleet in order:
                pids = {**fleet.pids(), "redis": redis.process.pid, "bench": os.getpid()}
                result[fleet.name] = summarize(fleet.run(payloads[fleet.name], args.clients, pids), pairs,
                                               result["raw"]["pairs_per_s"])  # fmt: skip
            result["raw"]["pairs_per_s"] = round(result["raw"]["pairs_per_s"], 1)
            rounds.append(result)
            print(json.dumps(result), flush=True)
    finally:
        for fleet in fleets:
            fleet.stop()
        redis.stop()
    medians = {
        name: {key: statistics.median(r[name][key] for r in rounds) for key in rounds[0][name] if key != "seconds"}
        for name in rounds[0]
    }
    report = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=REPO_ROOT).stdout.strip(),  # fmt: skip
        "baseline": str(args.baseline_repo) if args.baseline_repo else None,
        "tokenizers_parallelism": os.environ["TOKENIZERS_PARALLELISM"],
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "pairs_per_round": pairs,
        "rounds": rounds,
        "median": medians,
    }
    print(json.dumps(report["median"], indent=2))
    if args.out:
        write_json(args.out, "overhead", report)


if __name__ == "__main__":
    main()
