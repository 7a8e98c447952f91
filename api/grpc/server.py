"""The gRPC server of the API process: KServe V2 inference service and grpc.health.v1, on grpc.aio.

It runs on the HTTP app's event loop and shares its ranking service (see api/app.py), so a waiting call
costs a coroutine, not a thread. Connections (RERANK_GRPC_MAX_CONNECTIONS), streams per connection
(RERANK_GRPC_MAX_STREAMS), idle and old connections, client pings and the time a call's message has to
arrive (api/grpc/message_deadline.py) are bounded, so that streams opened and never sent cannot pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2_grpc

from api.grpc.auth import ApiKeyInterceptor
from api.grpc.message_deadline import MessageDeadlineInterceptor
from api.grpc.servicer import InferenceServicer
from api.ranking.service import RankingService
from shared.errors import RerankError
from shared.settings import Settings

log = logging.getLogger(__name__)

INFERENCE_SERVICE = "inference.GRPCInferenceService"
HEALTH_REFRESH_SECONDS = 2.0


KEEPALIVE_SECONDS = 60  # the server pings a connection idle this long, and closes it if the ping goes unanswered
KEEPALIVE_TIMEOUT_SECONDS = 20
MIN_CLIENT_PING_SECONDS = 10  # a client pinging more often without calls gets GOAWAY after MAX_PING_STRIKES
MAX_PING_STRIKES = 2
AGE_GRACE_MARGIN_SECONDS = 5


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """grpc core's channel arguments for the server: message size, connections, streams, ages and pings."""
    return [
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        # bind exclusively: a second fleet on the same port fails instead of sharing the clients
        ("grpc.so_reuseport", 0),
        ("grpc.max_allowed_incoming_connections", settings.grpc_max_connections),
        ("grpc.max_concurrent_streams", settings.grpc_max_streams),
        ("grpc.max_connection_idle_ms", int(settings.grpc_idle_timeout * 1000)),
        ("grpc.max_connection_age_ms", int(settings.grpc_max_connection_age * 1000)),
        # a call admitted just before the GOAWAY may still run for its whole timeout
        ("grpc.max_connection_age_grace_ms", int((settings.request_timeout + AGE_GRACE_MARGIN_SECONDS) * 1000)),
        ("grpc.keepalive_time_ms", KEEPALIVE_SECONDS * 1000),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_SECONDS * 1000),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_SECONDS * 1000),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
    ]


class GrpcServer:
    """Start, keep health up to date, stop."""

    def __init__(self, settings: Settings, service: RankingService) -> None:
        self._settings = settings
        self._service = service
        self._server = grpc.aio.server(
            interceptors=[
                ApiKeyInterceptor(settings.api_keys),  # first: a keyless call is refused before anything waits
                MessageDeadlineInterceptor(settings.body_total_timeout),
            ],
            options=server_options(settings),
        )
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(settings, service), self._server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._health_task: asyncio.Task | None = None
        self.port: int | None = None

    async def start(self) -> None:
        address = f"{self._settings.host}:{self._settings.grpc_port}"
        try:
            self.port = self._server.add_insecure_port(address)
        except RuntimeError:
            self.port = 0
        if not self.port:
            raise RuntimeError(f"cannot listen for gRPC on {address}: the port is taken (RERANK_GRPC_PORT, --grpc-port)")
        await self._server.start()
        self._health_task = asyncio.create_task(self._refresh_health(), name="grpc-health")
        log.info("gRPC (KServe V2) listening on %s", address)

    async def stop(self, grace: float = 5.0) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self._server.stop(grace)

    async def _refresh_health(self) -> None:
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        while True:
            try:
                await self._service.check_ready()
                status = serving
            except RerankError:
                status = not_serving
            for name in ("", INFERENCE_SERVICE):
                await self._health.set(name, status)
            await asyncio.sleep(HEALTH_REFRESH_SECONDS)
