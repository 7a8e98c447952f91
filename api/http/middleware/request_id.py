"""An ASGI middleware giving every HTTP request an id (the client's X-Request-ID, else a new one) and an access log line.

Pure ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware hides a client's
disconnect from the route, and routes watch for it to stop work nobody waits for (api/http/middleware/disconnect.py).
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.log_format import request_id as current_request_id

access_log = logging.getLogger("api.access")

QUIET_ROUTES = ("/v1/health/", "/metrics")  # polled by probes and scrapers: logged at debug level only


class RequestId:
    """Sets `request.state.request_id` (and the logging context), echoes it in X-Request-ID, logs the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = (Headers(scope=scope).get("x-request-id") or uuid.uuid4().hex)[:128]
        scope.setdefault("state", {})["request_id"] = request_id
        token = current_request_id.set(request_id)  # every line logged for this request carries it
        started, status = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = scope.get("path", "")
            access_log.log(
                logging.DEBUG if path.startswith(QUIET_ROUTES) else logging.INFO,
                "%s %s %d", scope.get("method", ""), path, status,
                extra={"status": status, "seconds": round(time.perf_counter() - started, 4)},
            )  # fmt: skip
            current_request_id.reset(token)
