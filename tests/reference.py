"""A plain transformers forward, pair by pair: what the service's logits must equal."""

from __future__ import annotations

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


class Reference:
    def __init__(self, model_dir: str, max_length: int) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.max_length = max_length

    def encode(self, query: str, passage: str) -> dict:
        """Passage cut from its end to fit, as truncate=END does when the query leaves room."""
        return self.tokenizer(
            query, passage, truncation="only_second", max_length=self.max_length, return_tensors="pt"
        )

    def token_count(self, query: str, passage: str) -> int:
        return int(self.encode(query, passage)["input_ids"].shape[1])

    def logits(self, query: str, passages: list[str]) -> list[float]:
        out = []
        with torch.inference_mode():
            for passage in passages:
                out.append(float(self.model(**self.encode(query, passage)).logits[0, 0]))
        return out


def token_rows(pairs) -> list[list[int]]:
    """Each pair's token ids of a request's EncodedPairs, as lists (for comparing with transformers' encodings)."""
    return [pairs.pair(i)[0].tolist() for i in range(len(pairs))]
