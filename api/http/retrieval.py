"""The NIM's retrieval route, POST /v1/retrieval/{model}/reranking: LiteLLM's default `nvidia_nim` route.

It only translates: it calls `RankingService.score`, the handler behind /v1/ranking, so the same queue,
workers, limits, auth and errors apply.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from api.http.dependencies import ranking_service
from api.http.errors import ERROR_RESPONSES, json_response
from api.http.json_body import JsonBodyRoute
from api.http.middleware.disconnect import unless_disconnected
from api.ranking.model_names import normalise_model_name
from api.ranking.service import RankingService
from shared.errors import ErrorType, RerankError, shown
from shared.schemas import RankingRequest, RankingResponse, build_ranking_response

router = APIRouter(responses=ERROR_RESPONSES, route_class=JsonBodyRoute)


@router.post("/v1/retrieval/{model:path}/reranking", response_model=RankingResponse, tags=["ranking"])
async def retrieval_rerank(
    model: str, body: RankingRequest, request: Request, service: RankingService = Depends(ranking_service)
) -> Response:
    """/v1/ranking under the model's own path (LiteLLM's default `nvidia_nim` route); `top_k` is applied."""
    if normalise_model_name(body.model) != normalise_model_name(model):
        raise RerankError(ErrorType.VALIDATION, f"the body's model {shown(body.model)} is not the URL's model {shown(model)}")
    result = await unless_disconnected(request, service.score(
        model=await service.resolve_model(model),  # the URL keeps the client's spelling
        query=body.query.text,
        passages=[p.text for p in body.passages],
        truncate=body.truncate,
        instruction=body.instruction,
        max_chunks_per_passage=body.max_chunks_per_passage,
        request_id=request.state.request_id,
    ))
    return json_response(build_ranking_response(result, body.limit))
