"""The NIM's ranking route, POST /v1/ranking. The router only translates; the service works."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from api.http.dependencies import ranking_service
from api.http.errors import ERROR_RESPONSES, json_response
from api.http.json_body import JsonBodyRoute
from api.http.middleware.disconnect import unless_disconnected
from api.ranking.service import RankingService
from shared.schemas import RankingRequest, RankingResponse, build_ranking_response

router = APIRouter(responses=ERROR_RESPONSES, route_class=JsonBodyRoute)


@router.post("/v1/ranking", response_model=RankingResponse, tags=["ranking"])
async def rank(body: RankingRequest, request: Request, service: RankingService = Depends(ranking_service)) -> Response:
    """Rank passages by relevance to the query (NVIDIA NIM contract)."""
    result = await unless_disconnected(request, service.score(
        model=body.model,
        query=body.query.text,
        passages=[p.text for p in body.passages],
        truncate=body.truncate,
        instruction=body.instruction,
        max_chunks_per_passage=body.max_chunks_per_passage,
        request_id=request.state.request_id,
    ))
    return json_response(build_ranking_response(result, body.limit))
