"""Pydantic models of the wire contract (API.md section 1) and of the worker task payloads."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from shared.settings import get_settings

Truncate = Literal["NONE", "END"]
MAX_CHUNKS_DESCRIPTION = (
    "Our extension (API.md section 6): score a passage longer than fits beside the query as up to this many "
    "windows, and give it the best window's logit; 1 to RERANK_MAX_CHUNKS_PER_PASSAGE; absent or 1: cut (END) or "
    "refused (NONE) as usual."
)
INSTRUCTION_DESCRIPTION = (
    "Our extension: the task instruction that fills the {instruction} of the model's prompt (Qwen3-Reranker, "
    "README \"Recipes\"), instead of the model's default. A model whose prompt has no {instruction} answers 400."
)


TOO_MANY_PASSAGES = "too_many_passages"  # the schema error type of a list over RERANK_MAX_PASSAGES (413, not 422)


def too_many_passages_message(count: int, limit: int) -> str:
    """What a client is told when a request carries more than RERANK_MAX_PASSAGES passages."""
    return f"{count} passages sent; at most {limit} are accepted per request"


def _at_most_max_passages(value: object) -> object:
    """Refuse a list over RERANK_MAX_PASSAGES on its length, before any item is validated: 690,000 tiny
    passages would otherwise each become a model object first (seconds on the event loop)."""
    if isinstance(value, list):
        limit = get_settings().max_passages
        if len(value) > limit:
            raise PydanticCustomError(TOO_MANY_PASSAGES, too_many_passages_message(len(value), limit))
    return value


def bounded_list(item: type) -> type:
    """`list[item]` that refuses more than RERANK_MAX_PASSAGES entries before validating them (TOO_MANY_PASSAGES)."""
    return Annotated[list[item], BeforeValidator(_at_most_max_passages)]  # type: ignore[valid-type,return-value]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Query(_Strict):
    text: str = Field(..., min_length=1, description="The query; must not be empty.")


class Passage(_Strict):
    text: str = Field(..., description="One candidate passage.")


class RankingRequest(_Strict):
    """Body of POST /v1/ranking (the NIM's contract, plus `top_n`/`top_k`)."""

    model: str = Field(..., min_length=1, description="A served model id, as listed by GET /v1/models.")
    query: Query
    passages: bounded_list(Passage) = Field(  # type: ignore[valid-type]
        ..., min_length=1, description="Candidates to rank, 1 to RERANK_MAX_PASSAGES (413 beyond)."
    )
    truncate: Truncate = Field(
        "NONE", description="NONE rejects a pair over the token limit; END cuts the passage from its end."
    )
    top_n: int | None = Field(None, ge=1, description="Return only the best N rankings.")
    top_k: int | None = Field(None, ge=1, description="Same as top_n (LiteLLM's spelling).")
    instruction: str | None = Field(None, description=INSTRUCTION_DESCRIPTION)
    max_chunks_per_passage: int | None = Field(None, ge=1, strict=True, description=MAX_CHUNKS_DESCRIPTION)

    @field_validator("truncate", mode="before")
    @classmethod
    def _upper_truncate(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def limit(self) -> int | None:
        """How many rankings to return (top_n wins over top_k); None means all."""
        return self.top_n if self.top_n is not None else self.top_k


class Ranking(BaseModel):
    index: int = Field(..., description="Position of the passage in the request's `passages`.")
    logit: float = Field(..., description="The model's raw score for the (query, passage) pair.")


class Usage(BaseModel):
    prompt_tokens: int = Field(..., description="Tokens fed to the model over all pairs, after truncation.")
    total_tokens: int = Field(..., description="Equal to prompt_tokens.")


class RankingResponse(BaseModel):
    rankings: list[Ranking] = Field(..., description="Best first: logit descending, then index ascending.")
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    root: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str = Field(..., description="What went wrong, for a person to read.")
    type: str = Field(..., description="The error type, e.g. validation_error.")
    code: int = Field(..., description="The HTTP status code.")


class ErrorEnvelope(BaseModel):
    """The one error shape of every route."""

    error: ErrorBody


class RankTask(BaseModel):
    """What the API sends a worker for one request: texts in, no passage text comes back."""

    request_id: str
    model_id: str
    query: str
    passages: list[str]
    truncate: Truncate
    max_passage_tokens: int | None = Field(
        None, ge=1, description="Cut each passage to this many tokens before NONE/END truncation (Cohere dialect)."
    )
    instruction: str | None = Field(None, description="Fills the prompt's {instruction}; None: the recipe's default.")
    max_chunks_per_passage: int = Field(1, ge=1, description="Windows a long passage may be scored as (1: none).")
    deadline: float | None = Field(
        None, description="Unix time after which nobody waits for the answer: the worker drops the request unscored."
    )


class RankResult(BaseModel):
    """What a worker returns: per passage, in input order."""

    logits: list[float]
    token_counts: list[int]


def build_ranking_response(result: RankResult, limit: int | None = None) -> RankingResponse:
    """Sort a worker's scores best first (ties by index) and keep the best `limit`.

    Built from plain dicts in one validation (pydantic-core), not one model object at a time: 512 rankings
    cost a fraction of a millisecond."""
    logits = result.logits
    order = sorted(range(len(logits)), key=lambda i: (-logits[i], i))
    if limit is not None:
        order = order[:limit]
    tokens = sum(result.token_counts)
    return RankingResponse.model_validate({
        "rankings": [{"index": i, "logit": logits[i]} for i in order],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })  # fmt: skip
