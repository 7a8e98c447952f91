"""Health routes: liveness of the API process, readiness of the whole path (Redis and a worker)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from redis.exceptions import RedisError

from api.errors import ERROR_RESPONSES
from api.ranking_service import RETRY_AFTER_SECONDS
from shared.errors import ErrorType, RerankError

router = APIRouter(tags=["health"], responses={503: ERROR_RESPONSES[503]})


@router.get("/v1/health/live")
async def live() -> dict:
    """200 while the API process serves."""
    return {"status": "live"}


@router.get("/v1/health/ready")
async def ready(request: Request) -> dict:
    """200 when Redis answers and at least one worker serves the configured model; 503 with the reason."""
    state = request.app.state
    model_id = state.settings.served_model_id
    try:
        await state.redis.ping()
        workers = await state.worker_registry.live_workers(model_id)
    except (RedisError, OSError):
        raise RerankError(ErrorType.UNAVAILABLE, "Redis is unreachable", retry_after=RETRY_AFTER_SECONDS) from None
    if not workers:
        raise RerankError(
            ErrorType.UNAVAILABLE, f"no worker is serving model {model_id!r}", retry_after=RETRY_AFTER_SECONDS
        )
    return {"status": "ready", "model": model_id, "workers": len(workers)}
