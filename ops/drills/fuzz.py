"""Fuzz drill: schemathesis over the OpenAPI spec and hypothesis-generated bodies for every route.

Starts its own fleet (Redis, one CPU worker with a tiny BERT cross-encoder, the API), then runs
schemathesis (check: not_a_server_error; examples, coverage and fuzzing phases) with `--max-examples`
per operation, and `--cases-per-route` hypothesis cases per route (ops/drills/fuzzing.py). Passes with zero 5xx,
no dropped connection and the worker alive, over at least `--min-cases` cases in all.
Usage: python -m ops.drills.fuzz [--max-examples 300] [--cases-per-route 500] [--min-cases 5000]
"""

from __future__ import annotations

import argparse
import json

import httpx

from ops.drills.stack import MODEL_ID, drill_stack
from ops.drills.fuzzing import hypothesis_bodies, schemathesis_run


def run(args: argparse.Namespace) -> dict:
    with drill_stack(model="tiny") as stack:
        code, schemathesis_cases, output = schemathesis_run(stack.url, args.max_examples, seed=args.seed)
        report = hypothesis_bodies(stack.url, MODEL_ID, args.cases_per_route)
        body = {"model": MODEL_ID, "query": {"text": "q"}, "passages": [{"text": "p"}]}
        served_after = httpx.post(stack.url + "/v1/ranking", json=body, timeout=30).status_code
        return {
            "schemathesis": {"exit_code": code, "cases": schemathesis_cases,
                             "summary": output[output.rfind("Test cases:"):].strip()[:300]},  # fmt: skip
            "hypothesis": {"cases": report.cases, "statuses": dict(sorted(report.statuses.items())),
                           "findings": report.findings[:20]},  # fmt: skip
            "total_cases": schemathesis_cases + report.cases,
            "worker_alive": stack.workers[0].process.poll() is None,
            "ranking_after_fuzz": served_after,
            "schemathesis_output": output if code else "",
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=300, help="schemathesis cases per operation and phase")
    parser.add_argument("--cases-per-route", type=int, default=500, help="hypothesis cases per route")
    parser.add_argument("--min-cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2))
    ok = (result["schemathesis"]["exit_code"] == 0 and not result["hypothesis"]["findings"]
          and result["worker_alive"] and result["ranking_after_fuzz"] == 200
          and result["total_cases"] >= args.min_cases)  # fmt: skip
    print("fuzz drill:", "PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
