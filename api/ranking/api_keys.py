"""The API key (RERANK_API_KEY) as every transport checks it: `Bearer <key>`, compared in constant time."""

from __future__ import annotations

import hmac


def key_matches(authorization: str | None, expected: str) -> bool:
    """Constant-time check of an `Authorization` header (or gRPC metadata) value against the configured key."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())
