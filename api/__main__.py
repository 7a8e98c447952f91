"""`python -m api [--fd N]`: the API process (HTTP and gRPC) for the RERANK_* settings (api/http/server.py)."""

from __future__ import annotations

import argparse
import sys

from api.http.server import serve
from shared.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__)
    parser.add_argument("--fd", type=int, help="serve HTTP on this inherited listening socket (rerank-fleet up)")
    args = parser.parse_args(argv)
    return serve(get_settings(), fd=args.fd)


if __name__ == "__main__":
    sys.exit(main())
