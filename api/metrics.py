"""The API's Prometheus metrics and `GET /metrics`: requests by protocol, route, model and status, errors by
type, and the fleet read from Redis at scrape time (api/fleet_metrics.py).

A request's model is known only once the ranking service has checked it, deep below the transport, so each
HTTP request and gRPC call carries a small `RequestLabels` in a context variable that the service fills in
(`note_model`); unknown models never become a label value.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import require_api_key
from api.fleet_metrics import FleetCollector, FleetReader

LABELS = ["protocol", "route", "model", "status"]
REQUESTS = Counter(
    "rerank_requests", "Requests answered, by protocol (http, grpc), route (or RPC), model and status.", LABELS
)
REQUEST_SECONDS = Histogram(
    "rerank_request_duration_seconds",
    "Time from a request's arrival to its answer, by protocol, route (or RPC), model and status.",
    LABELS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
ERRORS = Counter(
    "rerank_request_errors", "Requests answered with an error, by protocol and error type (the API.md taxonomy).",
    ["protocol", "error_type"],
)  # fmt: skip


@dataclass
class RequestLabels:
    """Labels of the request being served that only code below the transport learns."""

    model: str = ""
    status: str = ""


_current: ContextVar[RequestLabels | None] = ContextVar("request_labels", default=None)


def note_model(model: str) -> None:
    """Label the current request with `model` (a model that a live worker serves)."""
    labels = _current.get()
    if labels is not None:
        labels.model = model


def count_error(protocol: str, error_type: str) -> None:
    ERRORS.labels(protocol, error_type).inc()


def _observe(protocol: str, route: str, labels: RequestLabels, seconds: float) -> None:
    REQUESTS.labels(protocol, route, labels.model, labels.status).inc()
    REQUEST_SECONDS.labels(protocol, route, labels.model, labels.status).observe(seconds)


@contextmanager
def observe_grpc(rpc: str) -> Iterator[RequestLabels]:
    """Count and time one gRPC call; the caller sets `status` to the code's name when it fails."""
    labels = RequestLabels(status="OK")
    token = _current.set(labels)
    started = time.perf_counter()
    try:
        yield labels
    finally:
        _current.reset(token)
        _observe("grpc", rpc, labels, time.perf_counter() - started)


class HttpMetricsMiddleware:
    """ASGI middleware: count and time every HTTP request by route template, model and status code."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        labels = RequestLabels(status="500")
        token = _current.set(labels)
        started = time.perf_counter()

        async def send_and_note_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                labels.status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            _current.reset(token)
            route = getattr(scope.get("route"), "path", "unmatched")  # the template: job ids stay out of labels
            _observe("http", route, labels, time.perf_counter() - started)


class _Exposition:
    """This process's registry followed by one scrape's fleet snapshot."""

    def __init__(self, *collectors) -> None:
        self._collectors = collectors

    def collect(self):
        for collector in self._collectors:
            yield from collector.collect()


router = APIRouter(dependencies=[Depends(require_api_key)])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition: the API's own metrics and the fleet's, read from Redis now."""
    reader: FleetReader = request.app.state.fleet_reader
    snapshot = await reader.read()
    return Response(generate_latest(_Exposition(REGISTRY, FleetCollector(snapshot))), media_type=CONTENT_TYPE_LATEST)
