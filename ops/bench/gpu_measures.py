"""What the GPU benchmark (ops/bench/gpu.py) measures, one function each: the raw loop (with transformers' own
mask path, which reads the device every pass, and with the host's masks), the engine alone (its scheduler
and overlapped `launch`, no processes), the host's tokenizer rate, and the fleet over HTTP with each
process's CPU per pair and the worker's own count of the pairs it scored."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from pathlib import Path

import httpx
import numpy as np
import torch

from ops.bench.overhead import cpu_seconds
from ops.models.builder import MINILM_TOKENIZER
from ops.processes import start_api, start_redis, start_worker, worker_report


def words() -> list[str]:
    lines = (MINILM_TOKENIZER / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return [w for w in lines if w.isalpha() and len(w) > 2]  # whole WordPiece tokens: one token a word


def bodies(requests: int, passages: int, words_each: int, seed: int) -> list[dict]:
    """`requests` bodies of `passages` passages of `words_each` random words: every passage distinct (the
    worker scores identical pairs of a request once, so repeats would count work never done)."""
    rng, vocabulary = random.Random(seed), words()
    return [{"query": {"text": " ".join(rng.choices(vocabulary, k=4))},
             "passages": [{"text": " ".join(rng.choices(vocabulary, k=words_each))} for _ in range(passages)]}
            for _ in range(requests)]  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def raw_loop(model_dir: str, *, pairs: int, seq_len: int, batch: int, device, dtype, repeats: int, host_masks: bool) -> dict:
    """pairs/s of the bare transformers model over random ids of `seq_len` tokens, `batch` pairs a pass, one sync a
    run. `host_masks`: masks as the engine gives them (worker/model/masks.py), else transformers' 2-D mask path."""
    from transformers import AutoModelForSequenceClassification

    from worker.model.masks import HostMasks

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
    model = model.eval().to(device)
    ids = torch.randint(1000, min(model.config.vocab_size, 30000), (pairs, seq_len), device=device)
    masks, lengths = HostMasks.of(model), np.full(batch, seq_len, dtype=np.int32)
    mask = masks.for_batch(lengths, device, lambda t, d: t.to(d)) if host_masks else torch.ones_like(ids[:batch])

    def run() -> float:
        began, outs = time.perf_counter(), []
        with torch.inference_mode():
            for start in range(0, pairs, batch):
                rows = ids[start : start + batch]
                part = mask if mask is None or isinstance(mask, dict) else mask[: len(rows)]
                outs.append(model(input_ids=rows, attention_mask=part).logits)
            torch.cat(outs).float().cpu()  # the one synchronisation
        return time.perf_counter() - began

    run()  # warm-up (kernels, allocator)
    median = statistics.median(run() for _ in range(repeats))
    del model
    return {"pairs": pairs, "seq_len": seq_len, "batch": batch, "host_masks": host_masks,
            "median_ms": round(1000 * median, 2), "pairs_per_second": round(pairs / median, 1)}  # fmt: skip


def engine_alone(model_dir: str, device: torch.device, requests: list[dict], *, max_seq_len: int, repeats: int,
                 settings: dict) -> dict:  # fmt: skip
    """The engine's own path without processes: requests tokenized up front, then its scheduler and `launch`,
    the next pass queued before the last one's logits are read (as worker/engine/loop.py does on CUDA)."""
    from shared.settings import Settings
    from worker.engine.scheduler import Request, Scheduler
    from worker.model.device import batch_tokens, pass_sizing
    from worker.model.runtime import CrossEncoder

    encoder = CrossEncoder.load(Settings(model=model_dir, device=device.type, max_seq_len=max_seq_len, **settings))
    encoder.warmup()
    tokenized = [encoder.encode(b["query"]["text"], [p["text"] for p in b["passages"]], "END") for b in requests]
    config = Settings(**settings)
    budget = batch_tokens(config.max_batch_tokens, device)

    def run() -> tuple[float, dict]:
        scheduler = Scheduler(max_batch_tokens=budget, **pass_sizing(config.gpu_forward_ms, budget, device))
        for number, pairs in enumerate(tokenized):
            scheduler.add(Request(number, pairs))
        began, in_flight = time.perf_counter(), None
        while scheduler.pending() or in_flight:
            batch = scheduler.next_batch()
            launched = (batch, encoder.launch(batch.pairs)) if batch is not None else None
            if in_flight:
                logits, seconds = in_flight[1]()
                scheduler.complete(in_flight[0], logits, seconds if seconds is not None else 0.0)
            in_flight = launched
        return time.perf_counter() - began, scheduler.stats.as_dict()

    run()  # warm-up: every shape once, the pass sizing settled
    runs = [run() for _ in range(repeats)]
    seconds = statistics.median(s for s, _ in runs)
    pairs = sum(len(p) for p in tokenized)
    stats = runs[-1][1]
    return {"pairs": pairs, "median_s": round(seconds, 4), "pairs_per_second": round(pairs / seconds, 1),
            "batches": stats["batches"], "busy_ratio": round(stats["forward_seconds"] / max(runs[-1][0], 1e-9), 3),
            "mean_padded_tokens_per_batch": round(stats["padded_tokens"] / max(stats["batches"], 1))}  # fmt: skip


def tokenizer_rate(model_dir: str, requests: list[dict], *, max_seq_len: int) -> dict:
    """The host's tokenizer: pairs/s and process CPU per pair of `CrossEncoder.encode` (the worker's path)."""
    from shared.settings import Settings
    from worker.model.runtime import CrossEncoder

    encoder = CrossEncoder.load(Settings(model=model_dir, device="cpu", max_seq_len=max_seq_len))
    texts = [(b["query"]["text"], [p["text"] for p in b["passages"]]) for b in requests]
    encoder.encode(*texts[0], "END")
    cpu, wall = time.process_time(), time.perf_counter()
    pairs = sum(len(encoder.encode(query, passages, "END")) for query, passages in texts)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"pairs": pairs, "pairs_per_second": round(pairs / wall, 1), "cpu_us_per_pair": round(1e6 * cpu / pairs, 1)}


async def _send(url: str, model_id: str, bodies: list[dict], clients: int) -> tuple[float, list[float], int]:
    """Send `bodies` with `clients` in flight: total seconds, each request's latency, and the pairs answered."""
    todo, latencies, answered = list(reversed(bodies)), [], []
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients)) as client:

        async def one_client() -> None:
            while todo:
                body = todo.pop()
                began = time.perf_counter()
                response = await client.post(f"{url}/v1/ranking", json={"model": model_id, "truncate": "END", **body})
                response.raise_for_status()
                latencies.append(time.perf_counter() - began)
                answered.append(len(response.json()["rankings"]))

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        return time.perf_counter() - began, latencies, sum(answered)


def fleet(work: Path, model_dir: str, model_id: str, device: torch.device, *, requests: list[dict], warmup: list[dict],
          clients: int, repeats: int, **settings) -> dict:  # fmt: skip
    """redis-server, one worker and the API: `requests` sent `repeats` times by `clients` concurrent clients;
    pairs/s, latency p50, CPU per pair of each process, and pairs sent (the client's count) against pairs
    scored (the worker's batch statistics, read from its registry record)."""
    procs = []
    try:
        redis_proc = start_redis(work)
        procs.append(redis_proc)
        redis_url = redis_proc.extra["url"]
        worker = start_worker(work, redis_url=redis_url, model=model_dir, model_id=model_id, device=device.type,
                              timeout=900, log_level="warning", **settings)  # fmt: skip
        procs.append(worker)
        api = start_api(work, redis_url=redis_url, model=model_dir, model_id=model_id, grpc_port=0, log_level="warning")
        procs.append(api)
        url, name = api.extra["url"], worker.extra["name"]
        sent = asyncio.run(_send(url, model_id, warmup, clients))[2]
        engine_pid = worker_report(redis_url, name).get("engine_pid")
        pids = {"worker": worker.process.pid, "api": api.process.pid, **({"engine": engine_pid} if engine_pid else {})}
        cpu_before = {process: cpu_seconds(pid) for process, pid in pids.items()}
        runs = [asyncio.run(_send(url, model_id, requests, clients)) for _ in range(repeats)]
        cpu = {process: cpu_seconds(pid) - cpu_before[process] for process, pid in pids.items()}
        measured_pairs = sum(answered for _, _, answered in runs)
        sent += measured_pairs
        scored = _scored(redis_url, name, sent)
        seconds = statistics.median(total for total, _, _ in runs)
        latencies = sorted(latency for _, run_latencies, _ in runs for latency in run_latencies)
        return {"pairs_per_run": measured_pairs // repeats, "clients": clients, "median_s": round(seconds, 4),
                "pairs_per_second": round(measured_pairs / repeats / seconds, 1),
                "p50_ms": round(1000 * statistics.median(latencies), 1), "all_ms": [round(1000 * t, 1) for t in latencies],
                "cpu_us_per_pair": {p: round(1e6 * c / measured_pairs, 1) for p, c in cpu.items()},
                "pairs_sent": sent, "pairs_scored": scored}  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.stop()


def _scored(redis_url: str, worker_name: str, sent: int, wait: float = 10.0) -> int:
    """Pairs the worker's engine scored, from its heartbeat (waiting a few beats for the count to settle at `sent`)."""
    deadline = time.monotonic() + wait
    while True:
        scored = worker_report(redis_url, worker_name)["batch_stats"]["pairs"]
        if scored >= sent or time.monotonic() > deadline:
            return scored
        time.sleep(0.5)
