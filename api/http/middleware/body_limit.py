"""An ASGI middleware that refuses request bodies over RERANK_MAX_BODY_BYTES with the 413 envelope.

It checks Content-Length up front and counts the bytes of bodies streamed without one. Batch-job
uploads are exempt: they are streamed and bounded by RERANK_JOB_MAX_UPLOAD_BYTES (api/jobs/service.py).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.errors import error_response
from shared.errors import ErrorType, RerankError

EXEMPT_PREFIXES = ("/v1/ranking/jobs",)


class BodyLimit:
    """Wraps an ASGI app; bodies over `max_bytes` never reach a route."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self) -> RerankError:
        return RerankError(ErrorType.TOO_LARGE, f"request body over RERANK_MAX_BODY_BYTES ({self.max_bytes} bytes)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await error_response(self._error())(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # raised inside the route's body read: the app's handler answers with the 413 envelope
                    raise HTTPException(413, self._error().message)
            return message

        await self.app(scope, counted, send)
