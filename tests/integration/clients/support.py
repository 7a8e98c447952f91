"""What the client tests share: the keyed fleet's names, and the /v1/ranking logits every route must match."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import httpx

DOTTED_MODEL_ID = "acme/llama-3.2-tiny-rerank-v1.0"  # LiteLLM's URL spells it acme/llama-3_2-tiny-rerank-v1_0
API_KEY = "s3cret-test-key"

QUERY = "how do plants turn sunlight into energy"
DOCUMENTS = [
    "photosynthesis converts light energy into chemical energy stored in glucose",
    "the stock market closed higher on tuesday",
    "chlorophyll absorbs mostly blue and red light " * 60,  # over 512 tokens: cut, never refused
    "plants take in carbon dioxide and release oxygen",
    "a recipe for banana bread with walnuts",
]


@dataclass
class KeyedStack:
    """A fleet of its own (own Redis, one worker, one API) serving a dotted model id behind an API key."""

    model_id: str
    url: str
    api_key: str


class Ranked(NamedTuple):
    logits: list[float]  # in passage order
    tokens: int  # usage.total_tokens


def rank_v1(url: str, model: str, query: str, passages: list[str], api_key: str | None = None) -> Ranked:
    """What /v1/ranking answers for these pairs under END truncation: what every other route must match."""
    body = {"model": model, "query": {"text": query}, "passages": [{"text": p} for p in passages], "truncate": "END"}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.post(url + "/v1/ranking", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    logits = [0.0] * len(passages)
    for ranking in response.json()["rankings"]:
        logits[ranking["index"]] = ranking["logit"]
    return Ranked(logits, response.json()["usage"]["total_tokens"])


def best_first(logits: list[float]) -> list[int]:
    """Indices by logit descending, ties by index: the order /v1/ranking answers in."""
    return sorted(range(len(logits)), key=lambda i: (-logits[i], i))
