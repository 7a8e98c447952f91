"""NIM routes: POST /v1/ranking and GET /v1/models. The router only translates; the service works."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request, Response

from api.auth import require_api_key
from api.disconnect import unless_disconnected
from api.errors import ERROR_RESPONSES
from api.ranking_service import RankingService
from shared.schemas import ModelCard, ModelList, RankingRequest, RankingResponse, build_ranking_response

router = APIRouter(dependencies=[Depends(require_api_key)], responses=ERROR_RESPONSES)

_STARTED = int(time.time())


async def ranking_service(request: Request) -> RankingService:
    """The app's service. `async`, as every dependency here: FastAPI runs a plain `def` on its thread pool."""
    return request.app.state.ranking_service


@router.post("/v1/ranking", response_model=RankingResponse, tags=["ranking"])
async def rank(
    body: RankingRequest, request: Request, response: Response, service: RankingService = Depends(ranking_service)
) -> RankingResponse:
    """Rank passages by relevance to the query (NVIDIA NIM contract)."""
    result = await unless_disconnected(request, service.score(
        model=body.model,
        query=body.query.text,
        passages=[p.text for p in body.passages],
        truncate=body.truncate,
        request_id=request.state.request_id,
    ))
    return build_ranking_response(result, body.limit)


@router.get("/v1/models", response_model=ModelList, tags=["models"])
async def list_models(service: RankingService = Depends(ranking_service)) -> ModelList:
    """The models this fleet serves."""
    return ModelList(
        data=[ModelCard(id=m, created=_STARTED, owned_by="rerank-fleet", root=m) for m in await service.served_models()]
    )
