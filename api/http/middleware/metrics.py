"""An ASGI middleware that counts and times every HTTP request by route template, model and status code
(the counters: api/ranking/metrics.py)."""

from __future__ import annotations

from typing import Iterable, Iterator

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.ranking.metrics import observed_request


def _leaf_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI keeps an included router's routes there
        yield from _leaf_routes(included.routes) if included is not None else (route,)


def route_template(scope: Scope) -> str:
    """The template of the route that served (or would have served) the request; `unmatched` for none.

    A request answered before routing (a 401, a 413 on its declared length) still counts under its route.
    """
    route = scope.get("route")
    if route is None and scope.get("app") is not None:
        route = next((r for r in _leaf_routes(scope["app"].router.routes) if r.matches(scope)[0] is Match.FULL), None)
    return getattr(route, "path", "unmatched")  # the template: job ids stay out


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
                labels.route = route_template(scope)
