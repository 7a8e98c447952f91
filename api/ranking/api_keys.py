"""The API keys (RERANK_API_KEY) as every transport checks them: `Bearer <key>`, compared in constant time.

A caller is named by the key it presented (a digest, never the key) or, without keys, by its address: the
name scopes batch jobs and their limits (api/jobs/).
"""

from __future__ import annotations

import hashlib
import hmac


def caller_for(authorization: str | None, keys: list[str]) -> str | None:
    """The caller a `Bearer <key>` value (HTTP header or gRPC metadata) names, or None if it holds no valid key."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    presented = token.strip().encode()
    found = None
    for key in keys:  # every key is compared, so the time taken does not tell which one matched
        if hmac.compare_digest(presented, key.encode()):
            found = key
    return None if found is None else "key:" + hashlib.sha256(found.encode()).hexdigest()[:16]


def anonymous_caller(address: str | None) -> str:
    """The caller without API keys: the client's address."""
    return f"addr:{address or 'unknown'}"
