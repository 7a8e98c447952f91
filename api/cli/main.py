"""The `rerank-fleet` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pydantic import ValidationError

from api.cli.fleet_models import model_overrides
from api.cli.jobs import add_jobs_parser, run_jobs
from shared.log_format import configure_logging
from shared.settings import Settings, describe_settings_error


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rerank-fleet", description="Self-hosted, NIM-compatible text reranking.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up",
        help="start Redis (embedded unless --redis-url), the workers and the API; stop them with Ctrl-C",
        description="Every option falls back to its RERANK_* environment variable, then to the default.",
    )
    up.add_argument("--model", action="append", metavar="[ID=]SOURCE",
                    help="hub id or local directory of the reranker (RERANK_MODEL); repeat as --model ID=SOURCE to "
                    "serve several models, each with its own workers (RERANK_MODELS)")  # fmt: skip
    up.add_argument("--model-id", help="id clients send as `model` for a single --model (RERANK_MODEL_ID)")
    up.add_argument("--host", help="address the API listens on (RERANK_HOST, default 127.0.0.1)")
    up.add_argument("--port", type=int, help="HTTP port (RERANK_PORT, default 8000)")
    up.add_argument("--grpc-port", type=int, help="KServe V2 gRPC port, 0 for none (RERANK_GRPC_PORT, default 8001)")
    up.add_argument("--redis-url", help="use this Redis instead of an embedded one (RERANK_REDIS_URL)")
    up.add_argument("--data-dir", help="where the embedded Redis keeps jobs and results (RERANK_DATA_DIR, default "
                    "$XDG_DATA_HOME/rerank-fleet or ~/.local/share/rerank-fleet); one `up` at a time")
    up.add_argument("--device", choices=["auto", "cpu", "cuda"], help="worker device (RERANK_DEVICE)")
    up.add_argument("--cpu-workers", type=int, help="CPU worker processes where no GPU is visible (RERANK_CPU_WORKERS, "
                    "default 1; each gets the cores divided among them unless RERANK_TORCH_THREADS is set)")
    up.add_argument("--flower-port", type=int, help="port of the Flower dashboard (RERANK_FLOWER_PORT, default 5555)")
    up.add_argument("--no-flower", action="store_true", help="do not start Flower (same as --flower-port 0)")
    add_jobs_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "jobs":
        return run_jobs(args)
    try:
        overrides = model_overrides(args.model, args.model_id)  # api/cli/fleet_models.py
    except ValueError as exc:
        print(f"rerank-fleet: {exc}", file=sys.stderr)
        return 2
    overrides |= {
        name: value
        for name, value in (
            ("host", args.host),
            ("port", args.port),
            ("grpc_port", args.grpc_port),
            ("redis_url", args.redis_url),
            ("data_dir", args.data_dir),
            ("device", args.device),
            ("cpu_workers", args.cpu_workers),
            ("flower_port", 0 if args.no_flower else args.flower_port),
        )
        if value is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"rerank-fleet: invalid setting: {describe_settings_error(exc)}", file=sys.stderr)
        return 2
    configure_logging("info", settings.log_format)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the readiness polls
    from api.cli.launcher import Fleet  # grpc, tritonclient and numpy: only `up` needs them

    redis_url_given = args.redis_url is not None or bool(os.environ.get("RERANK_REDIS_URL"))
    return Fleet(settings, redis_url_given=redis_url_given).run()


if __name__ == "__main__":
    sys.exit(main())
