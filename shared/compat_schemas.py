"""Pydantic models of the Cohere rerank dialect (API.md section 3), also spoken by Jina's clients.

Requests ignore fields they do not know: the SDKs add optional fields from release to release (`priority`,
`relevant_spans`), and a newer client must keep working against this server. Known fields are validated.
"""

from __future__ import annotations

import math
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_validator, model_serializer

from shared.schemas import INSTRUCTION_DESCRIPTION, RankResult, bounded_list, build_ranking_response


class CohereDocument(BaseModel):
    """A document given as an object: `text` is ranked, other fields come back untouched (v1)."""

    model_config = ConfigDict(extra="allow")

    text: str = Field(..., description="The text that is ranked.")


class CohereRerankRequest(BaseModel):
    """Body of POST /v1/rerank and /v2/rerank (Cohere; Jina's /v1/rerank has the same shape)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, min_length=1, description="A served model id; default: the configured model.")
    query: str = Field(..., min_length=1, description="The query; must not be empty.")
    documents: bounded_list(str | CohereDocument) = Field(  # type: ignore[valid-type]
        ..., min_length=1, description="Candidates to rank: strings or {\"text\": ...} objects, 1 to "
        "RERANK_MAX_PASSAGES (413 beyond).",
    )  # fmt: skip
    top_n: int | None = Field(None, ge=1, description="Return only the best N results.")
    return_documents: bool = Field(False, description="Echo each result's document (v1 and Jina).")
    max_tokens_per_doc: int | None = Field(
        None, ge=1, description="Cut each document to this many tokens; the pair is then cut to fit the model."
    )
    rank_fields: list[str] | None = Field(None, description="Only [\"text\"] is supported (Cohere v1).")
    max_chunks_per_doc: int | None = Field(
        None, ge=1, strict=True,
        description="Score a document longer than fits as up to this many windows, the best one's score its own "
        "(our max_chunks_per_passage, API.md section 6); at most RERANK_MAX_CHUNKS_PER_PASSAGE.",
    )  # fmt: skip
    instruction: str | None = Field(None, description=INSTRUCTION_DESCRIPTION)

    @field_validator("rank_fields")
    @classmethod
    def _only_text(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and value != ["text"]:
            raise ValueError('only rank_fields=["text"] is supported')
        return value

    def texts(self) -> list[str]:
        """The text of every document, in request order."""
        return [doc if isinstance(doc, str) else doc.text for doc in self.documents]


class CohereResult(BaseModel):
    model_config = ConfigDict(extra="allow")  # `document` keeps a v1 object's other fields

    index: int = Field(..., description="Position of the document in the request's `documents`.")
    relevance_score: float = Field(..., ge=0, le=1, description="sigmoid(logit): the model's score in [0, 1].")
    document: CohereDocument | None = Field(None, description="The document, when `return_documents` is true.")

    @model_serializer(mode="wrap")
    def _omit_absent_document(self, handler: SerializerFunctionWrapHandler) -> dict:
        data = handler(self)
        if data.get("document") is None:
            data.pop("document", None)
        return data


class CohereApiVersion(BaseModel):
    version: Literal["1", "2"]


class CohereBilledUnits(BaseModel):
    search_units: int = Field(1, description="One per request; nothing is billed.")


class CohereMeta(BaseModel):
    api_version: CohereApiVersion
    billed_units: CohereBilledUnits = CohereBilledUnits()


class CohereRerankResponse(BaseModel):
    id: str = Field(..., description="A fresh id for this response.")
    results: list[CohereResult] = Field(..., description="Best first (logit descending, then index ascending).")
    meta: CohereMeta


def sigmoid(logit: float) -> float:
    """1 / (1 + e^-logit), without overflow for logits of any size."""
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    z = math.exp(logit)
    return z / (1.0 + z)


def build_cohere_response(
    result: RankResult, request: CohereRerankRequest, version: Literal["1", "2"]
) -> CohereRerankResponse:
    """A worker's scores as a Cohere reply: sorted like /v1/ranking, `top_n` kept, documents if asked."""
    ranked = build_ranking_response(result, request.top_n).rankings
    results = []
    for ranking in ranked:
        document = None
        if request.return_documents:
            original = request.documents[ranking.index]
            document = CohereDocument(text=original) if isinstance(original, str) else original
        results.append(CohereResult(index=ranking.index, relevance_score=sigmoid(ranking.logit), document=document))
    return CohereRerankResponse(id=str(uuid.uuid4()), results=results, meta=CohereMeta(api_version={"version": version}))
