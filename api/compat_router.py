"""Routes of the clients people already use: LiteLLM's NIM retrieval route, Cohere (v1, v2) and Jina rerank.

They only translate: every one calls `RankingService.score`, the handler behind /v1/ranking, so the same
queue, workers, limits, auth and errors apply.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request

from api.auth import require_api_key
from api.disconnect import unless_disconnected
from api.errors import ERROR_RESPONSES
from api.model_names import normalise_model_name
from api.ranking_router import ranking_service
from api.ranking_service import RankingService
from shared.compat_schemas import CohereRerankRequest, CohereRerankResponse, build_cohere_response
from shared.errors import ErrorType, RerankError
from shared.schemas import RankingRequest, RankingResponse, build_ranking_response

router = APIRouter(dependencies=[Depends(require_api_key)], responses=ERROR_RESPONSES)


@router.post("/v1/retrieval/{model:path}/reranking", response_model=RankingResponse, tags=["ranking"])
async def retrieval_rerank(
    model: str, body: RankingRequest, request: Request, service: RankingService = Depends(ranking_service)
) -> RankingResponse:
    """/v1/ranking under the model's own path (LiteLLM's default `nvidia_nim` route); `top_k` is applied."""
    if normalise_model_name(body.model) != normalise_model_name(model):
        raise RerankError(ErrorType.VALIDATION, f"the body's model {body.model!r} is not the URL's model {model!r}")
    result = await unless_disconnected(request, service.score(
        model=await service.resolve_model(model),  # the URL keeps the client's spelling
        query=body.query.text,
        passages=[p.text for p in body.passages],
        truncate=body.truncate,
        request_id=request.state.request_id,
    ))
    return build_ranking_response(result, body.limit)


async def _cohere_rerank(
    body: CohereRerankRequest, request: Request, service: RankingService, version: Literal["1", "2"]
) -> CohereRerankResponse:
    result = await unless_disconnected(request, service.score(
        model=await service.resolve_model(body.model),
        query=body.query,
        passages=body.texts(),
        truncate="END",  # the dialect has no NONE: long documents are cut, never refused
        max_passage_tokens=body.max_tokens_per_doc,
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
