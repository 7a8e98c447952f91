"""The FastAPI application: the services in the lifespan, the routers, the middleware in one fixed order,
the error handlers. The gRPC server runs in the same process and event loop, over the same services."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from api.grpc.server import GrpcServer
from api.http import cohere, health, jobs, ranking, retrieval
from api.http.errors import install_error_handlers
from api.http.middleware.auth import ApiKeyGate
from api.http.middleware.body_limit import BodyLimit
from api.http.middleware.guards import RequestGuards
from api.http.middleware.metrics import HttpMetricsMiddleware
from api.http.middleware.request_id import RequestId
from api.http.middleware.unread_body import CloseAfterUnreadBody
from api.jobs.service import JobService
from api.jobs.store import JobStore
from api.ranking.admission import Admission
from api.ranking.fleet_metrics import FleetReader
from api.ranking.result_waiter import ResultWaiter
from api.ranking.service import RankingService
from api.ranking.task_watch import TaskWatch
from api.ranking.worker_registry import WorkerRegistry
from shared.celery_app import create_celery_app
from shared.log_format import configure_logging, redacted_url
from shared.settings import SHORT_API_KEY_CHARS, Settings, get_settings

log = logging.getLogger("api")

ROUTERS = (health.router, ranking.router, retrieval.router, jobs.router, cohere.router)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the HTTP app for `settings` (default: from the environment)."""
    settings = settings or get_settings()
    # uvicorn's own loggers join the root handler, so that its lines take the same format; its access log is
    # off (it logs when its logger has a handler): api/http/middleware/request_id.py writes the one access log
    configure_logging(settings.log_level, settings.log_format, loggers=("uvicorn", "uvicorn.error"))
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Fail fast while Redis is away (503 within a second): one immediate retry, for a pooled
        # connection that Redis closed when it restarted, instead of redis-py's retries with backoff.
        redis = Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=5, health_check_interval=10,
                               retry=Retry(NoBackoff(), 1))  # fmt: skip
        waiter = ResultWaiter(redis)
        await waiter.start()
        registry = WorkerRegistry(redis, settings.worker_ttl)
        app.state.fleet_reader = FleetReader(redis, registry, settings.model_ids)
        celery = create_celery_app(settings, result_backend=False)
        app.state.ranking_service = service = RankingService(
            settings, celery, waiter, registry,
            admission=Admission(redis, settings.max_queued_requests), watch=TaskWatch(redis, registry),
        )  # fmt: skip
        app.state.job_store = job_store = JobStore(redis, settings.job_ttl)
        app.state.job_service = JobService(settings, job_store, celery, service)
        grpc_server = GrpcServer(settings, service) if settings.grpc_port else None
        if grpc_server is not None:
            await grpc_server.start()
        if settings.api_key is None:
            log.warning("RERANK_API_KEY is not set: every route is open without authentication")
        elif settings.short_api_keys:
            log.warning("%d of the API keys are shorter than %d characters: use long random keys (SECURITY.md)",
                        settings.short_api_keys, SHORT_API_KEY_CHARS)  # fmt: skip
        log.info("serving %s %s; broker %s", "models" if len(settings.model_ids) > 1 else "model",
                 ", ".join(settings.model_ids), redacted_url(settings.redis_url))  # fmt: skip
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop()
            await waiter.close()
            await redis.aclose()

    app = FastAPI(
        title="Rerank Fleet",
        version="0.1.0",
        description="NIM-compatible text reranking served by a fleet of cross-encoder workers.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.router.redirect_slashes = False  # RequestGuards drops a trailing slash instead of a bare 307
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    # Outermost first: metrics time everything, every answer (a 401 too) carries its request id and is logged;
    # host, key and body type are checked on the headers alone, before anything reads the body; an answer sent
    # before the body was read closes the connection.
    for middleware, options in reversed([
        (HttpMetricsMiddleware, {}),
        (CloseAfterUnreadBody, {}),
        (RequestId, {}),
        (RequestGuards, {"trusted_hosts": settings.allowed_hosts}),
        (ApiKeyGate, {"keys": settings.api_keys}),
        (BodyLimit, {"max_bytes": settings.max_body_bytes, "idle_timeout": settings.body_timeout,
                     "total_timeout": settings.body_total_timeout, "upload_timeout": settings.job_upload_timeout}),
    ]):  # fmt: skip
        app.add_middleware(middleware, **options)
    return app
