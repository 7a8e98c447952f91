"""Benchmark reports: the JSON result file of a benchmark (`write_json`), and the markdown report of
`ops/bench/rerank.py` (variants, goals: the issue's bounds, worker batch histograms)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path


def write_json(out: Path, bench: str, result: dict) -> Path:
    """`result` as `out/bench-<bench>-<UTC time>.json` (the folder made if need be); says where, returns the path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-{bench}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {path}")
    return path

# goal key -> (bound, higher is better, label)
GOALS = {
    "fleet_vs_st": (1.5, True, "fleet / sentence-transformers predict (pairs/s)"),
    "fleet_vs_ideal": (0.9, True, "fleet / offline ideal loop (pairs/s)"),
    "fleet_flop_fraction": (0.7, True, "fleet FLOPs on real tokens / fp32 matmul rate"),
    "lone_difference_ms": (5.0, False, "lone 1-passage: fleet p50 - in-process p50 (ms)"),
    "concurrent_64_ratio": (4.0, True, "64 concurrent 1-passage / one at a time (throughput)"),
    "fleet_vs_infinity": (1.1, True, "fleet / Infinity (pairs/s)"),
    "fleet_p99_vs_infinity_p99": (1.0, False, "fleet p99 / Infinity p99"),
    "scale_out_2x1_vs_1x2": (0.9, True, "2 workers x 1 thread / 1 worker x 2 threads (pairs/s)"),
}

LABELS = {
    "fleet": "fleet over HTTP (1 worker)",
    "fleet_2x1": "fleet over HTTP (2 workers x 1 thread)",
    "st": "sentence-transformers predict per request (batch 32)",
    "ideal": "offline ideal loop (global sort, token budget)",
    "infinity": "Infinity over HTTP",
}


def _f(value, digits: int = 1, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def markdown(result: dict) -> str:
    summary = result["summary"]
    spec = result["workload"]
    lines = [
        f"Workload `{spec['name']}`: {result['requests_per_round']} requests a round of {spec['passages']} passages "
        f"of {spec['min_words']}-{spec['max_words']} words, {spec['clients']} concurrent clients, truncate END; "
        f"{result['repeats']} round(s), medians. Machine: {result['machine']['cpu']}, {result['machine']['cores']} "
        f"cores, torch {result['machine']['torch']}, {result['threads']} torch threads, fleet and ideal loop in "
        f"{result.get('dtype', 'float32')}. "
        f"fp32 matmul rate: {_f(summary['matmul_peak_gflops'])} GFLOP/s.",
        f"Load: start `{result['uptime_start']}`; end `{result['uptime_end']}`.",
        "",
        "| variant | pairs/s | p50 ms / request | p99 ms / request | padding efficiency | fraction of FLOP peak |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in summary["variants"].items():
        lines.append(
            f"| {LABELS.get(name, name)} | {_f(row['pairs_per_second'])} | {_f(row['p50_ms'], 0)} | "
            f"{_f(row['p99_ms'], 0)} | {_f(row['padding_efficiency'], 2)} | {_f(row['flop_fraction'], 2)} |"
        )
    lines += ["", "| goal | bound | measured | met |", "|---|---|---|---|"]
    for key, goal in summary["goals"].items():
        bound, higher, label = GOALS[key]
        met = {True: "yes", False: "**no**", None: "not measured"}[goal["met"]]
        lines.append(f"| {label} | {'>=' if higher else '<='} {bound:g} | {_f(goal['value'], 2)} | {met} |")
    extras = result.get("extras")
    if extras:
        lone, conc = extras["lone"], extras["concurrent_64"]
        lines += [
            "",
            f"Lone 1-passage request ({lone['passage_words']} words, {lone['requests']} each): fleet p50 "
            f"{lone['fleet_p50_ms']:.1f} ms, in process {lone['in_process_p50_ms']:.1f} ms. 64 concurrent 1-passage "
            f"requests: {conc['concurrent_rps']:.1f} requests/s vs {conc['sequential_rps']:.1f} one at a time.",
        ]
    for name, stats in result.get("worker_batches", {}).items():
        lines += [
            "",
            f"Worker batches, `{name}`: {stats['batches']} forward passes, {stats['pairs']} pairs, "
            f"{stats['shared_batches']} shared by several requests; the model was busy "
            f"{100 * stats['busy_fraction']:.0f} % of the rounds' wall time (per worker), at "
            f"{stats['forward_padded_tokens_per_second']:.0f} padded tokens/s in its forward passes "
            f"(the ideal loop: {result['ideal_padded_tokens_per_second']:.0f} padded tokens/s, tokenizing included).",
            "",
            "| pairs per batch (<=) | " + " | ".join(stats["pairs_histogram"]) + " |",
            "|---|" + "---|" * len(stats["pairs_histogram"]),
            "| batches | " + " | ".join(str(v) for v in stats["pairs_histogram"].values()) + " |",
            "",
            "| padded tokens per batch (<=) | " + " | ".join(stats["tokens_histogram"]) + " |",
            "|---|" + "---|" * len(stats["tokens_histogram"]),
            "| batches | " + " | ".join(str(v) for v in stats["tokens_histogram"].values()) + " |",
        ]
    return "\n".join(lines)
