"""API-key check for HTTP routes (RERANK_API_KEY): `Authorization: Bearer <key>`."""

from __future__ import annotations

from fastapi import Request

from api.ranking.api_keys import key_matches
from shared.errors import ErrorType, RerankError


async def require_api_key(request: Request) -> None:
    """FastAPI dependency: with a key configured, refuse requests without it; without one, let all in."""
    api_key = request.app.state.settings.api_key
    if api_key is None:
        return
    if not key_matches(request.headers.get("authorization"), api_key.get_secret_value()):
        raise RerankError(ErrorType.AUTHENTICATION, "missing or invalid API key: send Authorization: Bearer <key>")
