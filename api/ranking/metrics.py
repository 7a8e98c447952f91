"""The API's request metrics, whatever the transport: requests by protocol, route, model and status, errors by type.

A request's model is known only once the ranking service has checked it, deep below the transport, so each
HTTP request and gRPC call carries a small `RequestLabels` in a context variable that the service fills in
(`note_model`); unknown models never become a label value. The transports open the context
(`observed_request`): the HTTP middleware (api/http/middleware/metrics.py) and the gRPC servicer.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator

from prometheus_client import Counter, Histogram, disable_created_metrics

disable_created_metrics()  # no `*_created` series beside every counter and histogram

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
    "rerank_request_errors", "Requests answered with an error, by protocol and error type.",
    ["protocol", "error_type"],
)  # fmt: skip


@dataclass
class RequestLabels:
    """Labels of the request being served, filled in as they become known."""

    route: str = ""
    model: str = ""
    status: str = ""


_current: ContextVar[RequestLabels | None] = ContextVar("request_labels", default=None)


def note_model(model: str) -> None:
    """Label the current request with `model` (a model that a live worker serves)."""
    labels = _current.get()
    if labels is not None:
        labels.model = model


NOT_READY = Counter(
    "rerank_readiness_not_ready", "Readiness probes answered not ready (HTTP 503, gRPC ready=false), by protocol: "
    "a probe's answer, not an error served to a client, so not in rerank_request_errors.", ["protocol"],
)  # fmt: skip


def count_error(protocol: str, error_type: str) -> None:
    ERRORS.labels(protocol, error_type).inc()


def count_not_ready(protocol: str) -> None:
    NOT_READY.labels(protocol).inc()


@contextmanager
def observed_request(protocol: str, *, route: str = "", status: str = "") -> Iterator[RequestLabels]:
    """Count and time one request; the transport sets `route` and `status` on the labels before the block ends."""
    labels = RequestLabels(route=route, status=status)
    token = _current.set(labels)
    started = time.perf_counter()
    try:
        yield labels
    finally:
        _current.reset(token)
        values = (protocol, labels.route, labels.model, labels.status)
        REQUESTS.labels(*values).inc()
        REQUEST_SECONDS.labels(*values).observe(time.perf_counter() - started)
