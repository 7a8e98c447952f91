"""Health routes: liveness of the API process, readiness of the whole path (Redis and a worker)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.errors import ERROR_RESPONSES

router = APIRouter(tags=["health"], responses={503: ERROR_RESPONSES[503]})


@router.get("/v1/health/live")
async def live() -> dict:
    """200 while the API process serves."""
    return {"status": "live"}


@router.get("/v1/health/ready")
async def ready(request: Request) -> dict:
    """200 when Redis answers and at least one worker serves the configured model; 503 with the reason."""
    service = request.app.state.ranking_service
    workers = await service.check_ready()
    return {"status": "ready", "model": request.app.state.settings.served_model_id, "workers": workers}
