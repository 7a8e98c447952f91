"""Cohere's rerank routes (v1 and v2), also spoken by Jina's clients.

They only translate: both call `RankingService.score`, the handler behind /v1/ranking, so the same queue,
workers, limits, auth and errors apply.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request

from api.http.dependencies import ranking_service
from api.http.errors import ERROR_RESPONSES
from api.http.json_body import JsonBodyRoute
from api.http.middleware.disconnect import unless_disconnected
from api.ranking.service import RankingService
from shared.compat_schemas import CohereRerankRequest, CohereRerankResponse, build_cohere_response

router = APIRouter(responses=ERROR_RESPONSES, route_class=JsonBodyRoute)


async def _cohere_rerank(
    body: CohereRerankRequest, request: Request, service: RankingService, version: Literal["1", "2"]
) -> CohereRerankResponse:
    result = await unless_disconnected(request, service.score(
        model=await service.resolve_model(body.model),
        query=body.query,
        passages=body.texts(),
        truncate="END",  # the dialect has no NONE: long documents are cut, never refused
        max_passage_tokens=body.max_tokens_per_doc,
        instruction=body.instruction,
        max_chunks_per_passage=body.max_chunks_per_doc,
        chunks_field="max_chunks_per_doc",
        request_id=request.state.request_id,
    ))
    return build_cohere_response(result, body, version)


@router.post("/v1/rerank", response_model=CohereRerankResponse, tags=["compatibility"])
async def cohere_v1_rerank(
    body: CohereRerankRequest, request: Request, service: RankingService = Depends(ranking_service)
) -> CohereRerankResponse:
    """Cohere v1 rerank (also Jina's): relevance_score = sigmoid(logit), documents echoed on request."""
    return await _cohere_rerank(body, request, service, "1")


@router.post("/v2/rerank", response_model=CohereRerankResponse, tags=["compatibility"])
async def cohere_v2_rerank(
    body: CohereRerankRequest, request: Request, service: RankingService = Depends(ranking_service)
) -> CohereRerankResponse:
    """Cohere v2 rerank: relevance_score = sigmoid(logit)."""
    return await _cohere_rerank(body, request, service, "2")
