"""Checks on a request's line and headers, before its body is read: the Host it names (RERANK_TRUSTED_HOSTS),
the type of its body (JSON, or NDJSON for batch jobs: never a form a web page could post cross-site; a job
must name its type, since a page can post a typeless body too), and a trailing slash, which is dropped
(`POST /v1/ranking/` is `/v1/ranking`, not a redirect)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api.http.errors import error_response
from shared.errors import ErrorType, RerankError

JOBS_PREFIX = "/v1/ranking/jobs"
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/ndjson", "application/json-lines")
BODY_METHODS = ("POST", "PUT", "PATCH")


def media_type(headers: Headers) -> str | None:
    """The Content-Type without its parameters, lower-case; None when the request has none."""
    value = headers.get("content-type")
    return value.split(";")[0].strip().lower() if value is not None else None


def _is_json(kind: str | None, *, typeless: bool) -> bool:
    if kind is None:
        return typeless  # read as JSON, as FastAPI does, where `typeless` allows it
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _host_allowed(host: str, allowed: list[str]) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    return any(name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:])) for pattern in allowed)


class RequestGuards:
    """Wraps an ASGI app; answers 400 (host) or 415 (body type) with the envelope, reading nothing else."""

    def __init__(self, app: ASGIApp, trusted_hosts: list[str]) -> None:
        self.app = app
        self.trusted_hosts = trusted_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        error = None
        if "*" not in self.trusted_hosts and not _host_allowed(headers.get("host", ""), self.trusted_hosts):
            error = RerankError(ErrorType.VALIDATION, "this Host is not served here (RERANK_TRUSTED_HOSTS)")
        elif scope["method"] in BODY_METHODS:
            kind = media_type(headers)
            jobs = scope["path"].startswith(JOBS_PREFIX)
            if not (_is_json(kind, typeless=not jobs) or (jobs and kind in NDJSON_TYPES)):
                error = RerankError(ErrorType.UNSUPPORTED_MEDIA, "the body must be JSON, sent with Content-Type: "
                                    "application/json" + (" (or NDJSON: application/x-ndjson)" if jobs else ""))  # fmt: skip
        if error is not None:
            await error_response(error)(scope, receive, send)
            return
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            scope["path"] = path.rstrip("/") or "/"
            scope["raw_path"] = scope.get("raw_path", b"").rstrip(b"/") or b"/"
        await self.app(scope, receive, send)
