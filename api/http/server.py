"""The API process's HTTP server: uvicorn, with the limits a slow or hostile client meets before any route.

uvicorn bounds keep-alive but not how long a request's headers may take or how large they may be, so the
HTTP/1.1 protocol here adds both: headers not complete within RERANK_HEADER_TIMEOUT close the connection
(408), and headers over RERANK_MAX_HEADER_BYTES are answered 431, whether they arrive in pieces or in one
read. It also applies RERANK_MAX_CONNECTIONS itself (uvicorn's limit_concurrency test), answering 503 in the
error envelope, and answers a request it cannot parse with the 400 envelope (uvicorn's are plain text).
A body that stops arriving is timed out in the ASGI middleware (api/http/middleware/body_limit.py). The
graceful shutdown waits for requests as long as they may run (RERANK_REQUEST_TIMEOUT), plus a margin.

    python -m api               # HTTP on RERANK_HOST:RERANK_PORT, gRPC on RERANK_GRPC_PORT
"""

from __future__ import annotations

import asyncio
import functools
import socket

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.http.errors import error_response
from shared.errors import ErrorType, RerankError
from shared.settings import Settings

SHUTDOWN_MARGIN_SECONDS = 5.0


def _raw_answer(status: int, error: RerankError) -> bytes:
    """An HTTP/1.1 answer with the error envelope that closes the connection, for before any ASGI cycle."""
    response = error_response(error, status)
    head = [f"HTTP/1.1 {status} {_REASONS[status]}".encode()]
    head += [name + b": " + value for name, value in response.raw_headers]
    return b"\r\n".join([*head, b"connection: close", b"", response.body])


_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}


class HeadersTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request whose line and headers are over the limit."""


OVER_CAPACITY_RETRY_SECONDS = 1


async def _over_capacity(scope, receive, send) -> None:
    """The answer past RERANK_MAX_CONNECTIONS: 503 in the error envelope (uvicorn's own is plain text)."""
    error = RerankError(ErrorType.UNAVAILABLE, "the API is serving RERANK_MAX_CONNECTIONS connections; retry shortly",
                        retry_after=OVER_CAPACITY_RETRY_SECONDS)  # fmt: skip
    response = error_response(error)
    response.headers["connection"] = "close"
    await response(scope, receive, send)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline and a size limit on each request's headers, and its
    concurrency limit answered with the error envelope."""

    def __init__(self, *args, header_timeout: float, max_header_bytes: int, max_connections: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._max_header_bytes = max_header_bytes
        self._max_connections = max_connections
        self._header_bytes = 0  # bytes received while the headers were incomplete
        self._parsed_header_bytes = 0  # the request line and headers as parsed, however they arrived
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_arrived()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        self._headers_arrived()
        self._header_bytes = self._parsed_header_bytes = 0
        self._header_timer = self.loop.call_later(self._header_timeout, self._refuse, 408, RerankError(
            ErrorType.TIMEOUT, "the request headers did not arrive within RERANK_HEADER_TIMEOUT"))  # fmt: skip

    def _headers_arrived(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, status: int, error: RerankError) -> None:
        self._headers_arrived()
        if not self.transport.is_closing():
            self.transport.write(_raw_answer(status, error))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        waiting = self._header_timer is not None
        super().data_received(data)
        if waiting and self._header_timer is not None:  # still in the headers after this piece
            self._header_bytes += len(data)
            if self._header_bytes > self._max_header_bytes:
                self._refuse(431, RerankError(ErrorType.TOO_LARGE, "request headers over RERANK_MAX_HEADER_BYTES"))

    def send_400_response(self, msg: str) -> None:
        """A request that could not be parsed (uvicorn answers in plain text), or one whose headers a parser
        callback found over the limit: the error envelope."""
        if self._parsed_header_bytes > self._max_header_bytes:
            self._refuse(431, RerankError(ErrorType.TOO_LARGE, "request headers over RERANK_MAX_HEADER_BYTES"))
        else:
            self._refuse(400, RerankError(ErrorType.VALIDATION, "malformed HTTP request"))

    def _count_parsed(self, size: int) -> None:
        # counted as parsed, so that headers arriving in one read (the data_received count never sees them
        # incomplete) meet the limit too; the exception stops the parser, and uvicorn calls send_400_response
        self._parsed_header_bytes += size
        if self._parsed_header_bytes > self._max_header_bytes:
            raise HeadersTooLarge

    def on_url(self, url: bytes) -> None:
        self._count_parsed(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_parsed(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # the next request of a keep-alive connection
            self._await_headers()

    def on_headers_complete(self) -> None:
        self._headers_arrived()
        # uvicorn's own test of limit_concurrency, which is left unset so that its plain-text 503 never answers
        if len(self.connections) < self._max_connections and len(self.tasks) < self._max_connections:
            super().on_headers_complete()
            return
        self.logger.warning("over RERANK_MAX_CONNECTIONS (%d): answered 503", self._max_connections)
        app, self.app = self.app, _over_capacity  # the request's cycle runs the app it finds here
        try:
            super().on_headers_complete()
        finally:
            self.app = app


def server_config(settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration for `settings`: the guarded protocol, limits and timeouts, no access log of its
    own (api/http/middleware/request_id.py writes the one access log)."""
    protocol = functools.partial(GuardedHttpProtocol, header_timeout=settings.header_timeout,
                                 max_header_bytes=settings.max_header_bytes,
                                 max_connections=settings.max_connections)  # fmt: skip
    return uvicorn.Config(
        "api.app:create_app", factory=True, host=settings.host, port=settings.port, http=protocol,  # type: ignore[arg-type]
        timeout_keep_alive=settings.keepalive_timeout,
        timeout_graceful_shutdown=settings.request_timeout + SHUTDOWN_MARGIN_SECONDS,
        access_log=False, log_level=settings.log_level, proxy_headers=False,
    )  # fmt: skip


def serve(settings: Settings, fd: int | None = None) -> int:
    """Serve until SIGTERM or SIGINT, on the socket `fd` (inherited from `rerank-fleet up`) or one bound now,
    before the app starts: a port that is taken ends the process at once, with one line."""
    config = server_config(settings)
    if fd is not None:
        sock = socket.socket(fileno=fd)
    else:
        try:
            sock = socket.create_server((settings.host, settings.port), family=_family(settings.host))
        except OSError as exc:
            print(f"rerank-fleet api: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", flush=True)
            return 1
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else 1


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
