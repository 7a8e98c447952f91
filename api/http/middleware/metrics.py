"""An ASGI middleware that counts and times every HTTP request by route template, model and status code
(the counters: api/ranking/metrics.py)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.ranking.metrics import observed_request


class HttpMetricsMiddleware:
    """Wraps an ASGI app; the outermost middleware, so that it times everything below it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with observed_request("http", status="500") as labels:

            async def send_and_note_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    labels.status = str(message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_and_note_status)
            finally:
                labels.route = getattr(scope.get("route"), "path", "unmatched")  # the template: job ids stay out
