"""An ASGI middleware giving every HTTP request an id (the client's X-Request-ID if it follows the rule, else a
new one) and the one access log line; a request cut short by the server's shutdown is answered 503.

Pure ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware hides a client's
disconnect from the route, and routes watch for it to stop work nobody waits for (api/http/middleware/disconnect.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.errors import error_response
from shared.errors import ErrorType, RerankError
from shared.log_format import is_valid_request_id
from shared.log_format import request_id as current_request_id

access_log = logging.getLogger("api.access")

QUIET_ROUTES = ("/v1/health/", "/metrics", "/v1/metrics")  # polled by probes and scrapers: logged at debug level only
SHUTDOWN_RETRY_AFTER = 5


class RequestId:
    """Sets `request.state.request_id` (and the logging context), echoes it in X-Request-ID, logs the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        asked = Headers(scope=scope).get("x-request-id")
        request_id = asked if is_valid_request_id(asked) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = current_request_id.set(request_id)  # every line logged for this request carries it
        started, status, answered = time.perf_counter(), 500, False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            # uvicorn cancels what outlives its graceful shutdown: answer it in the envelope, not a plain 500
            if answered:
                raise
            error = RerankError(ErrorType.UNAVAILABLE, "the server is shutting down; send the request again",
                                retry_after=SHUTDOWN_RETRY_AFTER)  # fmt: skip
            await error_response(error)(scope, receive, send_with_id)
        finally:
            path = scope.get("path", "")
            access_log.log(
                logging.DEBUG if path.startswith(QUIET_ROUTES) else logging.INFO,
                "%s %s %d", scope.get("method", ""), path, status,
                extra={"status": status, "seconds": round(time.perf_counter() - started, 4)},
            )  # fmt: skip
            current_request_id.reset(token)
