"""Plain transformers forwards, pair by pair: what the service's logits must equal."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer


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

    def windows(self, query: str, passage: str, *, max_windows: int, overlap: int = 32) -> list[dict]:
        """The pairs of a passage's windows as API.md section 6 says: its own tokens cut into windows of the room
        beside the query, each put where transformers' pair encoding puts a passage (learnt from a probe pair)."""
        ids = [self.tokenizer(text, add_special_tokens=False).input_ids for text in (query, passage, "zebra")]
        q, p, probe = ids
        full = self.tokenizer(query, "zebra", return_token_type_ids=True)
        tokens, types = full["input_ids"], full["token_type_ids"]
        i = next(i for i in range(len(tokens)) if tokens[i : i + len(q)] == q)
        j = next(j for j in range(i + len(q), len(tokens)) if tokens[j : j + len(probe)] == probe)
        room = self.max_length - (len(tokens) - len(q) - len(probe)) - len(q)
        step, start, pairs = room - min(overlap, room // 2), 0, []
        while True:
            piece = p[start : start + room]
            pairs.append({
                "input_ids": torch.tensor([tokens[:j] + piece + tokens[j + len(probe) :]]),
                "token_type_ids": torch.tensor([types[:j] + [types[j]] * len(piece) + types[j + len(probe) :]]),
            })  # fmt: skip
            if start + room >= len(p) or len(pairs) == max_windows:
                return pairs
            start += step

    def best_window_logit(self, query: str, passage: str, *, max_windows: int, overlap: int = 32) -> tuple[float, int]:
        """The maximum of the windows' logits, and the tokens of all their pairs (what usage counts)."""
        pairs = self.windows(query, passage, max_windows=max_windows, overlap=overlap)
        uses_types = "token_type_ids" in self.tokenizer.model_input_names
        with torch.inference_mode():
            logits = [float(self.model(**({**pair} if uses_types else {"input_ids": pair["input_ids"]})).logits[0, 0])
                      for pair in pairs]  # fmt: skip
        return max(logits), sum(int(pair["input_ids"].shape[1]) for pair in pairs)


class PromptReference:
    """The contract of API.md section 5, read from a model directory's rerank_config.json and computed pair by pair
    with plain transformers: tokens(prefix) + tokens(pair) + tokens(suffix), each part tokenized alone; the
    classifier's logit, or the LM's logits of the score tokens at the last position."""

    def __init__(self, model_dir: str, max_length: int) -> None:
        recipe = json.loads((Path(model_dir) / "rerank_config.json").read_text())
        self.prompt, self.score = recipe["prompt"], recipe.get("score", {"type": "classifier"})
        self.instruction = recipe.get("instruction", "")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        # the tokenizer's own specials; the test tokenizers put them all in front (a BOS)
        self.head = self.tokenizer("").input_ids if recipe.get("special_tokens") else []
        causal = self.score["type"] == "token_logits"
        auto = AutoModelForCausalLM if causal else AutoModelForSequenceClassification
        self.model = auto.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.max_length = max_length

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def encode(self, query: str, passage: str, instruction: str | None = None, truncate: str = "END") -> list[int]:
        """The sequence fed to the model; END cuts the pair part from its end."""
        pair = self.prompt["pair"].format(query=query, passage=passage, instruction=instruction or self.instruction)
        prefix, suffix = self._ids(self.prompt.get("prefix", "")), self._ids(self.prompt.get("suffix", ""))
        pair_ids = self._ids(pair)
        if truncate == "END":
            pair_ids = pair_ids[: self.max_length - len(self.head) - len(prefix) - len(suffix)]
        return self.head + prefix + pair_ids + suffix

    def logits(self, query: str, passages: list[str], instruction: str | None = None) -> list[float]:
        out = []
        with torch.inference_mode():
            for passage in passages:
                ids = torch.tensor([self.encode(query, passage, instruction)])
                if self.score["type"] == "classifier":
                    out.append(float(self.model(input_ids=ids).logits[0, 0]))
                    continue
                last = self.model(input_ids=ids).logits[0, -1]
                score = last[self._ids(self.score["positive"])[0]]
                if self.score.get("negative"):
                    score = score - last[self._ids(self.score["negative"])[0]]
                out.append(float(score))
        return out

    def window_texts(self, query: str, passage: str, *, max_windows: int, overlap: int = 32) -> list[str]:
        """API.md section 6 with a prompt: the passage's own tokens cut into windows of the room the prompt and the
        query leave, each window the passage's characters from its first token's start to its last token's end."""
        own = self.tokenizer(passage, add_special_tokens=False, return_offsets_mapping=True)
        empty_pair = self._ids(self.prompt["pair"].format(query=query, passage="", instruction=self.instruction))
        fixed = len(self.head) + len(self._ids(self.prompt.get("prefix", ""))) + len(self._ids(self.prompt.get("suffix", "")))
        room = self.max_length - fixed - len(empty_pair)
        offsets, count = own["offset_mapping"], len(own.input_ids)
        if count <= room:
            return [passage]
        step, start, texts = room - min(overlap, room // 2), 0, []
        while True:
            last = min(start + room, count) - 1
            texts.append(passage[offsets[start][0] : offsets[last][1]])
            if start + room >= count or len(texts) == max_windows:
                return texts
            start += step


def token_rows(pairs) -> list[list[int]]:
    """Each pair's token ids of a request's EncodedPairs, as lists (for comparing with transformers' encodings)."""
    return [pairs.pair(i)[0].tolist() for i in range(len(pairs))]
