"""What probes, clients and scrapers read: liveness, readiness (Redis and a worker), the served models, metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.http.dependencies import fleet_reader, ranking_service
from api.http.errors import ERROR_RESPONSES, error_response
from api.ranking.fleet_metrics import FleetReader, exposition
from api.ranking.metrics import count_not_ready
from api.ranking.service import RankingService
from shared.errors import ErrorType, RerankError
from shared.schemas import ModelCard, ModelList

router = APIRouter()

_STARTED = int(time.time())


@router.get("/v1/health/live", tags=["health"], responses={503: ERROR_RESPONSES[503]})
async def live() -> dict:
    """200 while the API process serves."""
    return {"status": "live"}


@router.get("/v1/health/ready", tags=["health"], responses={503: ERROR_RESPONSES[503]}, response_model=None)
async def ready(
    model: str | None = Query(None, description="Ask about this model only; default: every configured model."),
    service: RankingService = Depends(ranking_service),
) -> dict | Response:
    """200 when Redis answers and a worker serves every configured model (or `model`); 503 naming one that has none
    (counted as rerank_readiness_not_ready, not as an error served to a client)."""
    try:
        workers = await service.check_ready(await service.resolve_model(model) if model else None)
    except RerankError as error:
        if error.type is not ErrorType.UNAVAILABLE:
            raise
        count_not_ready("http")
        return error_response(error, counted=False)
    first = next(iter(workers))
    return {"status": "ready", "model": first, "workers": workers[first], "models": workers}


@router.get("/v1/models", response_model=ModelList, tags=["models"], responses=ERROR_RESPONSES)
async def list_models(service: RankingService = Depends(ranking_service)) -> ModelList:
    """The models this fleet serves."""
    return ModelList(
        data=[ModelCard(id=m, created=_STARTED, owned_by="rerank-fleet", root=m) for m in await service.served_models()]
    )


@router.get("/metrics", include_in_schema=False)
@router.get("/v1/metrics", include_in_schema=False)  # API.md names both
async def metrics(reader: FleetReader = Depends(fleet_reader)) -> Response:
    """Prometheus text exposition: the API's own metrics and the fleet's, read from Redis now."""
    return Response(exposition(await reader.read()), media_type=CONTENT_TYPE_LATEST)
