"""The API key check (RERANK_API_KEY), in ASGI before anything else reads the request: a request without a
valid key gets the 401 envelope and nothing else; its body is never read. Health routes stay open."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api.http.errors import error_response
from api.ranking.api_keys import anonymous_caller, caller_for
from shared.errors import ErrorType, RerankError

OPEN_PREFIXES = ("/v1/health/",)


class ApiKeyGate:
    """Wraps an ASGI app; sets `request.state.caller` (who submits and reads batch jobs)."""

    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.keys:
            caller = anonymous_caller((scope.get("client") or (None,))[0])
        elif scope["path"].startswith(OPEN_PREFIXES):
            caller = None
        else:
            caller = caller_for(Headers(scope=scope).get("authorization"), self.keys)
            if caller is None:
                error = RerankError(ErrorType.AUTHENTICATION, "missing or invalid API key: send Authorization: Bearer <key>")
                await error_response(error)(scope, receive, send)
                return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)
