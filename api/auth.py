"""API-key check for HTTP routes (RERANK_API_KEY): `Authorization: Bearer <key>`."""

from __future__ import annotations

import hmac

from fastapi import Request

from shared.errors import ErrorType, RerankError


def key_matches(authorization: str | None, expected: str) -> bool:
    """Constant-time check of an `Authorization` header value against the configured key."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


async def require_api_key(request: Request) -> None:
    """FastAPI dependency: with a key configured, refuse requests without it; without one, let all in."""
    api_key = request.app.state.settings.api_key
    if api_key is None:
        return
    if not key_matches(request.headers.get("authorization"), api_key.get_secret_value()):
        raise RerankError(ErrorType.AUTHENTICATION, "missing or invalid API key: send Authorization: Bearer <key>")
