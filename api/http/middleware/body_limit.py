"""An ASGI middleware that bounds request bodies: over RERANK_MAX_BODY_BYTES they get the 413 envelope, and a
body that stops arriving for RERANK_BODY_TIMEOUT seconds, or is not whole within RERANK_BODY_TOTAL_TIMEOUT
(RERANK_JOB_UPLOAD_TIMEOUT for a batch-job upload) however steadily it trickles in, gets 408.

It checks Content-Length up front and counts the bytes of bodies streamed without one. Batch-job
uploads are exempt from the size limit: they are streamed and bounded by RERANK_JOB_MAX_UPLOAD_BYTES
(api/jobs/service.py), and by RERANK_MAX_BODY_BYTES per request line.
"""

from __future__ import annotations

import asyncio
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.errors import error_response
from api.http.middleware.guards import JOBS_PREFIX
from shared.errors import ErrorType, RerankError

BODY_TIMEOUT_STATUS = 408


class BodyLimit:
    """Wraps an ASGI app; bodies over `max_bytes`, stalled for `idle_timeout` seconds or not whole within
    `total_timeout` (`upload_timeout` for a job upload) never reach a route."""

    def __init__(self, app: ASGIApp, max_bytes: int, idle_timeout: float, total_timeout: float,
                 upload_timeout: float) -> None:  # fmt: skip
        self.app = app
        self.max_bytes = max_bytes
        self.idle_timeout = idle_timeout
        self.total_timeout = total_timeout
        self.upload_timeout = upload_timeout

    def _error(self) -> RerankError:
        return RerankError(ErrorType.TOO_LARGE, f"request body over RERANK_MAX_BODY_BYTES ({self.max_bytes} bytes)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limited = not scope["path"].startswith(JOBS_PREFIX)
        declared = dict(scope["headers"]).get(b"content-length")
        if limited and declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await error_response(self._error())(scope, receive, send)
            return
        total, total_setting = (self.total_timeout, "RERANK_BODY_TOTAL_TIMEOUT") if limited else (
            self.upload_timeout, "RERANK_JOB_UPLOAD_TIMEOUT")  # fmt: skip
        deadline = time.monotonic() + total  # from the headers' arrival: the body's whole time
        received, complete = 0, False

        async def counted() -> Message:
            nonlocal received, complete
            if complete:  # after the body: a disconnect, however long it takes
                return await receive()
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), min(self.idle_timeout, max(left, 0.0)))
            except asyncio.TimeoutError:
                setting = "RERANK_BODY_TIMEOUT" if left > self.idle_timeout else total_setting
                raise HTTPException(BODY_TIMEOUT_STATUS, f"the request body did not arrive within {setting}") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if limited and received > self.max_bytes:
                    # raised inside the route's body read: the app's handler answers with the 413 envelope
                    raise HTTPException(413, self._error().message)
            return message

        await self.app(scope, counted, send)
