"""Rerank Fleet's front door: HTTP (FastAPI) routes, result waiting, and the `rerank-fleet` command."""
