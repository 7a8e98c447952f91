"""Benchmark: the fleet against what a user would run instead, side by side in one run, on CPU.

Variants, run in alternating order in every round (median over rounds), all on the same requests:
- `fleet`: real processes (redis-server, one worker with --threads torch threads, uvicorn), over HTTP;
- `fleet_2x1`: the same API and Redis, two workers of one torch thread each (scale-out check);
- `st`: `sentence_transformers.CrossEncoder.predict(pairs, batch_size=32)` per request, in process;
- `ideal`: an offline loop over all pairs of the round: tokenized, sorted by length, token-budget
  batches, the worker's own tokenizer and forward pass (CrossEncoder), no queue and no network;
- `infinity`: `infinity_emb v2 --model-id DIR --engine torch --device cpu` over HTTP, when its venv
  is given (--infinity-python or $INFINITY_PYTHON; `bash ops/bench/make_infinity_venv.sh` creates one);
- `matmul`: the fp32 matmul rate of this machine (best of a square and the model's own GEMM shapes, through
  torch's matmul and through oneDNN).
Then, unless --workload is not `mixed` or --no-extras: a lone 1-passage request (fleet vs in process, p50)
and 64 concurrent 1-passage requests vs the same sent one at a time.

Usage: python -m ops.bench.rerank [--model-dir DIR] [--out DIR] [--workload mixed|long] [--repeats 3]
                                  [--requests N] [--quick] [--infinity-python PATH] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import torch

from api.cli.embedded_redis import free_port
from ops.bench.jobs import vocabulary
from ops.bench.workload import (
    WORKLOADS,
    Request,
    fixed_size_batches,
    histogram_delta,
    latency_summary,
    make_requests,
    median_of,
    padded_tokens,
    token_budget_batches,
)
from ops.bench.report import GOALS, markdown
from ops.models.builder import build_minilm
from worker.model.device import CPU_BATCH_TOKENS
from tests.processes import Proc, start_api, start_redis, start_worker, worker_report

MODEL_ID = "minilm-bench"
SCALE_OUT_ID = "minilm-bench-2x1"
ST_BATCH = 32
MATMUL_SHAPES = [(2048, 2048, 2048), (4096, 384, 1536), (4096, 1536, 384)]  # (m, k, n)


# --- in-process models ------------------------------------------------------------------------------


class Ideal:
    """The offline loop: the worker's own tokenizer and forward pass, all pairs sorted globally, token-budget
    batches, no queue and no network."""

    def __init__(self, model_dir: str, budget: int, dtype: str = "float32") -> None:
        from shared.settings import Settings
        from worker.model.runtime import CrossEncoder

        self.encoder = CrossEncoder.load(Settings(model=model_dir, device="cpu", dtype=dtype))
        self.budget = budget
        self.flops_per_token = 2 * sum(
            p.numel() for name, p in self.encoder.model.named_parameters() if ".embeddings." not in name
        )

    def encode(self, requests: list[Request]):
        from worker.text.tokenization import EncodedPairs

        return EncodedPairs.concat([self.encoder.encode(r.query, r.passages, "END") for r in requests])

    def lengths(self, requests: list[Request]) -> list[int]:
        return self.encode(requests).lengths.tolist()

    def run(self, requests: list[Request]) -> dict:
        started = time.perf_counter()
        pairs = self.encode(requests)
        lengths = pairs.lengths.tolist()
        batches = token_budget_batches(lengths, self.budget)
        for batch in batches:
            self.encoder.score(pairs.take(batch))
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "pairs": len(lengths), "real_tokens": sum(lengths),
                "padded_tokens": padded_tokens(batches, lengths), "batches": len(batches)}  # fmt: skip

    def one(self, query: str, passage: str) -> float:
        """Seconds to tokenize and score one pair."""
        began = time.perf_counter()
        self.encoder.score(self.encoder.encode(query, [passage], "END"))
        return time.perf_counter() - began


class SentenceTransformers:
    """sentence-transformers per request, `clients` threads sharing the model behind a lock."""

    def __init__(self, model_dir: str, budget: int) -> None:
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(model_dir, device="cpu")
        self.lock = threading.Lock()

    def run(self, requests: list[Request], clients: int) -> dict:
        def predict(request: Request) -> None:
            with self.lock:
                self.model.predict([(request.query, p) for p in request.passages], batch_size=ST_BATCH,
                                   show_progress_bar=False)  # fmt: skip

        return closed_loop(requests, clients, predict)


class Child:
    """One in-process variant in its own spawned process, as clean as a worker's.

    sentence-transformers pulls in scikit-learn and its own OpenMP runtime; in one process with the offline
    loop, that loop ran about 1.6x slower here. Each variant gets a process of its own.
    """

    def __init__(self, kind: type, model_dir: str, threads: int, budget: int, **options) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.process = context.Process(
            target=_child_main, args=(theirs, kind, model_dir, threads, budget, options), daemon=True
        )
        self.process.start()

    def call(self, method: str, *args):
        self.conn.send((method, args))
        ok, value = self.conn.recv()
        if not ok:
            raise RuntimeError(f"in-process variant failed: {value}")
        return value

    def close(self) -> None:
        if self.process.is_alive():
            self.conn.send(None)
            self.process.join(30)


def _child_main(conn, kind: type, model_dir: str, threads: int, budget: int, options: dict) -> None:
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    target = kind(model_dir, budget, **options)
    while (message := conn.recv()) is not None:
        method, args = message
        try:
            value = getattr(target, args[0]) if method == "attr" else getattr(target, method)(*args)
            conn.send((True, value))
        except Exception as exc:  # reported in the bench process
            conn.send((False, repr(exc)))


def matmul_rate(seconds_each: float = 1.0) -> dict:
    """fp32 GFLOP/s for each shape, through torch's matmul (MKL on x86) and through oneDNN's linear (what
    the packed forward uses, where it works); `peak` is the best of all, the machine's fp32 matmul rate."""
    from worker.model.packed_forward import linear_kernel, onednn_linear

    kernels = {"torch": lambda a, b, bias: a @ b}
    if linear_kernel(torch.device("cpu"), torch.float32) is onednn_linear:
        kernels["onednn"] = lambda a, weight, bias: onednn_linear(a, weight, bias, False)
    rates = {}
    with torch.inference_mode():
        for m, k, n in MATMUL_SHAPES:
            a, b = torch.randn(m, k), torch.randn(k, n)
            operands = {"torch": (a, b, None), "onednn": (a, b.T.contiguous(), torch.zeros(n))}
            for name, kernel in kernels.items():
                args = operands[name]
                for _ in range(2):
                    kernel(*args)
                calls, started = 0, time.perf_counter()
                while time.perf_counter() - started < seconds_each:
                    kernel(*args)
                    calls += 1
                rates[f"{name} {m}x{k}x{n}"] = 2 * m * k * n * calls / (time.perf_counter() - started) / 1e9
    return {"gflops": rates, "peak_gflops": max(rates.values())}


# --- clients ----------------------------------------------------------------------------------------


def closed_loop(requests: list[Request], clients: int, send) -> dict:
    """`clients` threads take the next request as soon as their last one is answered."""
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for request in requests:
        todo.put(request)
    latencies: list[float] = []
    errors: list[BaseException] = []

    def client() -> None:
        while True:
            try:
                request = todo.get_nowait()
            except queue.Empty:
                return
            began = time.perf_counter()
            try:
                send(request)
            except BaseException as exc:  # reported after the round, never silently dropped
                errors.append(exc)
                return
            latencies.append(time.perf_counter() - began)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} request(s) failed, first: {errors[0]!r}")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "pairs": sum(len(r.passages) for r in requests), **latency_summary(latencies)}


def fleet_sender(url: str, model_id: str):
    local = threading.local()

    def send(request: Request) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=600)
        body = {"model": model_id, "query": {"text": request.query}, "truncate": "END",
                "passages": [{"text": p} for p in request.passages]}  # fmt: skip
        response = local.client.post(f"{url}/v1/ranking", json=body)
        response.raise_for_status()
        if len(response.json()["rankings"]) != len(request.passages):
            raise RuntimeError("the fleet returned the wrong number of rankings")

    return send


def infinity_sender(url: str):
    local = threading.local()

    def send(request: Request) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=600)
        body = {"model": MODEL_ID, "query": request.query, "documents": list(request.passages),
                "return_documents": False, "raw_scores": True}  # fmt: skip
        response = local.client.post(f"{url}/rerank", json=body)
        response.raise_for_status()
        if len(response.json()["results"]) != len(request.passages):
            raise RuntimeError("Infinity returned the wrong number of results")

    return send


# --- processes --------------------------------------------------------------------------------------


def start_infinity(python: str, model_dir: str, log_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    argv = [str(Path(python).parent / "infinity_emb"), "v2", "--model-id", model_dir, "--engine", "torch",
            "--device", "cpu", "--port", str(port), "--served-model-name", MODEL_ID]  # fmt: skip
    log = open(log_dir / "infinity.log", "wb")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return process, f"http://127.0.0.1:{port}"


def wait_http(url: str, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up in {timeout:g}s")


def batch_stats(redis_url: str, workers: list[Proc]) -> list[dict]:
    return [worker_report(redis_url, w.extra["name"])["batch_stats"] for w in workers]


def stats_delta(after: list[dict], before: list[dict]) -> dict:
    """Counters and histograms that the given workers added up between two readings."""
    out: dict = {"pairs_histogram": {}, "tokens_histogram": {}}
    for key in ("batches", "pairs", "real_tokens", "padded_tokens", "shared_batches", "forward_seconds"):
        out[key] = sum(a[key] - b[key] for a, b in zip(after, before))
    for a, b in zip(after, before):
        for mine, theirs in (("pairs_histogram", "batch_pairs_histogram"), ("tokens_histogram", "batch_tokens_histogram")):
            for bucket, count in histogram_delta(a[theirs], b[theirs]).items():
                out[mine][bucket] = out[mine].get(bucket, 0) + count
    for mine in ("pairs_histogram", "tokens_histogram"):
        out[mine] = dict(sorted(out[mine].items(), key=lambda item: int(item[0])))
    out["padding_efficiency"] = out["real_tokens"] / out["padded_tokens"] if out["padded_tokens"] else None
    return out


# --- extras -----------------------------------------------------------------------------------------


def lone_and_concurrent(args, url: str, ideal: "Child", words: list[str]) -> dict:
    """A lone 1-passage request (fleet vs in process) and 64 concurrent 1-passage requests vs one at a time."""
    from ops.bench.workload import WorkloadSpec

    spec = WorkloadSpec("one", passages=1, min_words=10, max_words=30, requests=64)
    send = fleet_sender(url, MODEL_ID)
    fleet_s, local_s = [], []
    for request in make_requests(spec, words, count=args.lone, seed=99):
        time.sleep(0.05)  # let the last request's aftermath (result storing, heartbeats) pass on both sides
        began = time.perf_counter()
        send(request)
        fleet_s.append(time.perf_counter() - began)
        time.sleep(0.05)
        local_s.append(ideal.call("one", request.query, request.passages[0]))
    rounds = []
    for repeat in range(args.repeats):
        requests = make_requests(spec, words, count=64, seed=200 + repeat)
        began = time.perf_counter()
        for request in requests:
            send(request)
        sequential = time.perf_counter() - began
        concurrent = asyncio.run(_concurrent(url, requests))
        rounds.append({"sequential_rps": 64 / sequential, "concurrent_rps": 64 / concurrent,
                       "ratio": sequential / concurrent})  # fmt: skip
    return {
        "lone": {"requests": args.lone, "passage_words": "10-30", "fleet_p50_ms": 1000 * statistics.median(fleet_s),
                 "in_process_p50_ms": 1000 * statistics.median(local_s),
                 "difference_ms": 1000 * (statistics.median(fleet_s) - statistics.median(local_s))},
        "concurrent_64": {"rounds": rounds, "ratio": statistics.median(r["ratio"] for r in rounds),
                          "sequential_rps": median_of(rounds, "sequential_rps"),
                          "concurrent_rps": median_of(rounds, "concurrent_rps")},
    }  # fmt: skip


async def _concurrent(url: str, requests: list[Request]) -> float:
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=len(requests))) as client:
        bodies = [{"model": MODEL_ID, "query": {"text": r.query}, "passages": [{"text": r.passages[0]}]} for r in requests]
        began = time.perf_counter()
        responses = await asyncio.gather(*(client.post(f"{url}/v1/ranking", json=b) for b in bodies))
        elapsed = time.perf_counter() - began
    for response in responses:
        response.raise_for_status()
    return elapsed


# --- the run ----------------------------------------------------------------------------------------


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in _run(["lscpu"]).splitlines()
                  if line.startswith("Model name")), platform.processor())  # fmt: skip
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}


def uptime() -> str:
    """`uptime`'s line: the load averages a run started and ended under."""
    return _run(["uptime"])


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def run(args: argparse.Namespace) -> dict:
    spec = WORKLOADS[args.workload]
    requests_per_round = args.requests or (8 if args.quick else spec.requests)
    torch.set_num_threads(args.threads)
    words = vocabulary()
    work = Path(tempfile.mkdtemp(prefix="bench-rerank-"))
    model_dir = args.model_dir or str(build_minilm(work / "minilm"))
    result: dict = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "uptime_start": uptime(), "machine": machine(), "workload": spec.__dict__,
        "requests_per_round": requests_per_round, "repeats": args.repeats, "threads": args.threads, "dtype": args.dtype,
        "max_batch_tokens": args.batch_tokens or CPU_BATCH_TOKENS, "command": " ".join([Path(sys.executable).name, "-m", "ops.bench.rerank", *sys.argv[1:]]),
    }  # fmt: skip
    procs: list[Proc] = []
    children: list[Child] = []
    infinity = None
    try:
        infinity_python = args.infinity_python or os.environ.get("INFINITY_PYTHON")
        if infinity_python and Path(infinity_python).exists():
            infinity = start_infinity(infinity_python, model_dir, work)
        else:
            print("infinity: skipped (no venv: pass --infinity-python or set INFINITY_PYTHON; "
                  "`bash ops/bench/make_infinity_venv.sh` creates one)", file=sys.stderr)  # fmt: skip
        redis_proc = start_redis(work)
        procs.append(redis_proc)
        redis_url = redis_proc.extra["url"]
        common = {"redis_url": redis_url, "model": model_dir, "timeout": 600, "dtype": args.dtype}
        if args.batch_tokens:
            common["max_batch_tokens"] = args.batch_tokens
        main_worker = start_worker(work, model_id=MODEL_ID, torch_threads=args.threads, **common)
        procs.append(main_worker)
        scale_workers = []
        if not args.no_scale_out:
            for _ in range(2):
                scale_workers.append(start_worker(work, model_id=SCALE_OUT_ID, torch_threads=1, **common))
            procs.extend(scale_workers)
        api = start_api(work, redis_url=redis_url, model=model_dir, model_id=MODEL_ID, grpc_port=0, timeout=120)
        procs.append(api)
        url = api.extra["url"]
        if infinity is not None:
            wait_http(f"{infinity[1]}/health", infinity[0])

        budget = args.batch_tokens or CPU_BATCH_TOKENS
        ideal = Child(Ideal, model_dir, args.threads, budget, dtype=args.dtype)
        st = Child(SentenceTransformers, model_dir, args.threads, budget)
        children.extend([ideal, st])
        variants = {
            "fleet": lambda reqs: closed_loop(reqs, spec.clients, fleet_sender(url, MODEL_ID)),
            "st": lambda reqs: st.call("run", reqs, spec.clients),
            "ideal": lambda reqs: ideal.call("run", reqs),
        }
        if scale_workers:
            variants["fleet_2x1"] = lambda reqs: closed_loop(reqs, spec.clients, fleet_sender(url, SCALE_OUT_ID))
        if infinity is not None:
            variants["infinity"] = lambda reqs: closed_loop(reqs, spec.clients, infinity_sender(infinity[1]))
        warm = make_requests(spec, words, count=2, seed=12345)
        for name, variant in variants.items():
            variant(warm)
        print(f"warmed up: {', '.join(variants)}", file=sys.stderr)

        before = {"fleet": batch_stats(redis_url, [main_worker]), "fleet_2x1": batch_stats(redis_url, scale_workers)}
        rounds: dict[str, list[dict]] = {name: [] for name in [*variants, "matmul"]}
        order = [*variants, "matmul"]
        for repeat in range(args.repeats):
            requests = make_requests(spec, words, count=requests_per_round, seed=repeat)
            lengths = ideal.call("lengths", requests)
            real = sum(lengths)
            st_padded = 0
            for start in range(0, len(lengths), spec.passages):
                request_lengths = lengths[start : start + spec.passages]
                st_padded += padded_tokens(fixed_size_batches(len(request_lengths), ST_BATCH), request_lengths)
            shift = repeat % len(order)
            for name in order[shift:] + order[:shift]:  # a different variant goes first in every round
                load = os.getloadavg()[0]
                if name == "matmul":
                    rounds[name].append({**matmul_rate(), "load1": load})
                    continue
                outcome = variants[name](requests)
                outcome.update(real_tokens=real, pairs_per_second=outcome["pairs"] / outcome["seconds"], load1=load)
                if name == "st":
                    outcome["padded_tokens"] = st_padded
                rounds[name].append(outcome)
                print(f"round {repeat + 1}/{args.repeats} {name}: {outcome['pairs_per_second']:.1f} pairs/s "
                      f"(load {load:.1f})", file=sys.stderr)  # fmt: skip
        after = {"fleet": batch_stats(redis_url, [main_worker]), "fleet_2x1": batch_stats(redis_url, scale_workers)}
        result["rounds"] = rounds
        result["worker_batches"] = {}
        for name in ("fleet", "fleet_2x1"):
            if before[name]:
                stats = stats_delta(after[name], before[name])
                wall = sum(o["seconds"] for o in rounds[name]) * len(before[name])  # worker-seconds
                stats["busy_fraction"] = stats["forward_seconds"] / wall
                stats["forward_padded_tokens_per_second"] = stats["padded_tokens"] / stats["forward_seconds"]
                result["worker_batches"][name] = stats
        result["ideal_padded_tokens_per_second"] = statistics.median(
            o["padded_tokens"] / o["seconds"] for o in rounds["ideal"]
        )
        if args.workload == "mixed" and not args.no_extras:
            result["extras"] = lone_and_concurrent(args, url, ideal, words)
        result["flops_per_token"] = ideal.call("attr", "flops_per_token")
    finally:
        for child in children:
            child.close()
        for proc in reversed(procs):
            proc.stop()
        if infinity is not None:
            infinity[0].terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                infinity[0].wait(30)
            if infinity[0].poll() is None:
                infinity[0].kill()
    result["uptime_end"] = uptime()
    result["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result["summary"] = summarize(result)
    return result


def summarize(result: dict) -> dict:
    """Medians per variant, and each goal's ratio as the median of the per-round ratios."""
    rounds = result["rounds"]
    peak = median_of(rounds["matmul"], "peak_gflops")
    flops = result["flops_per_token"]
    variants = {}
    for name, outcomes in rounds.items():
        if name == "matmul" or not outcomes:
            continue
        row = {key: median_of(outcomes, key) for key in ("pairs_per_second", "p50_ms", "p99_ms")}
        # each round against the matmul rate of the same round (the load drifts between rounds)
        row["flop_fraction"] = statistics.median(
            o["real_tokens"] * flops / o["seconds"] / 1e9 / m["peak_gflops"] for o, m in zip(outcomes, rounds["matmul"])
        )
        padded = sum(o.get("padded_tokens") or 0 for o in outcomes)
        row["padding_efficiency"] = sum(o["real_tokens"] for o in outcomes) / padded if padded else None
        variants[name] = row
    batches = result.get("worker_batches", {})
    for name in ("fleet", "fleet_2x1"):
        if name in batches and name in variants:
            variants[name]["padding_efficiency"] = batches[name]["padding_efficiency"]

    def ratio(a: str, b: str) -> float | None:
        if not rounds.get(a) or not rounds.get(b):
            return None
        return statistics.median(x["pairs_per_second"] / y["pairs_per_second"] for x, y in zip(rounds[a], rounds[b]))

    extras = result.get("extras", {})
    measured = {
        "fleet_vs_st": ratio("fleet", "st"),
        "fleet_vs_ideal": ratio("fleet", "ideal"),
        "fleet_flop_fraction": variants.get("fleet", {}).get("flop_fraction"),
        "lone_difference_ms": extras.get("lone", {}).get("difference_ms"),
        "concurrent_64_ratio": extras.get("concurrent_64", {}).get("ratio"),
        "fleet_vs_infinity": ratio("fleet", "infinity"),
        "fleet_p99_vs_infinity_p99": (variants["fleet"]["p99_ms"] / variants["infinity"]["p99_ms"])
        if "infinity" in variants and "fleet" in variants else None,
        "scale_out_2x1_vs_1x2": ratio("fleet_2x1", "fleet"),
    }  # fmt: skip
    goals = {}
    for key, (bound, higher_is_better, _label) in GOALS.items():
        value = measured.get(key)
        goals[key] = {"value": value, "bound": bound,
                      "met": None if value is None else (value >= bound if higher_is_better else value <= bound)}  # fmt: skip
    return {"matmul_peak_gflops": peak, "variants": variants, "goals": goals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="a cross-encoder directory (default: build MiniLM-L6 in a temp dir)")
    parser.add_argument("--out", default="ops/bench/results", help="folder for the JSON and markdown results")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="mixed")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every variant (median over rounds)")
    parser.add_argument("--requests", type=int, help="requests per variant per round (default: per workload)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (fleet worker, in process)")
    parser.add_argument("--batch-tokens", type=int, help="token budget of the fleet and the ideal loop "
                        f"(default: the worker's CPU default, {CPU_BATCH_TOKENS})")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="RERANK_DTYPE of the fleet's workers and the ideal loop (sentence-transformers and "
                        "Infinity stay in float32, their default)")
    parser.add_argument("--lone", type=int, default=40, help="lone 1-passage requests per side")
    parser.add_argument("--infinity-python", help="python of a venv with infinity-emb (else $INFINITY_PYTHON)")
    parser.add_argument("--no-scale-out", action="store_true", help="skip the 2-worker x 1-thread variant")
    parser.add_argument("--no-extras", action="store_true", help="skip the 1-passage latency and concurrency checks")
    parser.add_argument("--quick", action="store_true", help="8 requests a round, 1 round, 10 lone requests")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.lone = 1, 10
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # as `rerank-fleet up` runs workers: tokenizers on every core
    print(f"TOKENIZERS_PARALLELISM={os.environ['TOKENIZERS_PARALLELISM']}", flush=True)
    began = time.monotonic()
    result = run(args)
    result["wall_seconds"] = time.monotonic() - began
    result["tokenizers_parallelism"] = os.environ["TOKENIZERS_PARALLELISM"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-rerank-{args.workload}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (out / f"{stem}.md").write_text(table + "\n")
    print(table)
    print(f"\nwritten: {out / stem}.json, .md ({result['wall_seconds']:.0f} s, "
          f"TOKENIZERS_PARALLELISM={result['tokenizers_parallelism']})")


if __name__ == "__main__":
    main()
