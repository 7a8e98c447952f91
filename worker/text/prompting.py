"""The prompt encoder: one request's (query, passages) as the token ids of prompted sequences (API.md section 5).

Each sequence is tokens(prefix) + tokens(pair) + tokens(suffix), every part tokenized alone without the
tokenizer's specials, `pair` filled with the query, the passage and the instruction and tokenized as one
string; with `special_tokens` the whole sequence is then wrapped with the tokenizer's own specials, as
`tokenizer(text)` does. The limit L applies to the whole sequence: NONE refuses a longer one, END removes
tokens from the end of the pair part (the passage's end, and the query's too when nothing else is left).

It needs only a `tokenizers.Tokenizer` and lays its sequences end to end into flat arrays (`EncodedPairs`),
as the worker's Celery process hands requests to the engine.
"""

from __future__ import annotations

from itertools import chain
from typing import Sequence

import numpy as np
from tokenizers import Encoding, Tokenizer

from shared.errors import instruction_refused
from worker.text.prefix import encode_prefixes
from worker.text.recipes import Recipe
from worker.text.tokenization import IDS, EncodedPairs, PairTokenizer, check_deadline
from worker.text.truncation import pair_too_long
from worker.text.windows import Windows, plan_windows


def text_encoder(
    tokenizer: Tokenizer, recipe: Recipe, *, max_seq_len: int, uses_type_ids: bool
) -> "PairTokenizer | PromptEncoder":
    """How requests to a model of this recipe become tokens: its prompt, or the tokenizer's own pair encoding.

    Both have `encode(query, passages, truncate, max_passage_tokens=None, instruction=None) -> EncodedPairs`."""
    if recipe.prompt is not None:
        return PromptEncoder(tokenizer, recipe, max_seq_len)
    return PairTokenizer(tokenizer, max_seq_len=max_seq_len, uses_type_ids=uses_type_ids)


TOKENIZE_SLICE = 32  # prompted pairs tokenized at once between two looks at the request's deadline


class PromptEncoder:
    """Token ids of prompted (query, passage) sequences under the token limit `max_seq_len`."""

    def __init__(self, tokenizer: Tokenizer, recipe: Recipe, max_seq_len: int) -> None:
        if recipe.prompt is None:
            raise ValueError("a PromptEncoder needs a recipe with a prompt")
        self.tokenizer = tokenizer
        self.recipe = recipe
        self.max_seq_len = max_seq_len
        self._prefix = tokenizer.encode(recipe.prompt.prefix, add_special_tokens=False)
        self._suffix = tokenizer.encode(recipe.prompt.suffix, add_special_tokens=False)
        specials = tokenizer.num_special_tokens_to_add(is_pair=False) if recipe.special_tokens else 0
        self.fixed_tokens = len(self._prefix.ids) + len(self._suffix.ids) + specials  # all but the pair part
        self.cut_long_passages = True  # END: tokenize an over-long passage from a prefix (worker/text/prefix.py)
        if self.fixed_tokens >= max_seq_len:
            raise recipe.fail(
                f"the prompt's prefix, suffix and special tokens take {self.fixed_tokens} tokens, leaving no room "
                f"for the pair under the token limit of {max_seq_len}"
            )

    def encode(
        self,
        query: str,
        passages: Sequence[str],
        truncate: str,
        max_passage_tokens: int | None = None,
        instruction: str | None = None,
        *,
        deadline: float | None = None,
    ) -> EncodedPairs:
        """Per passage, the token ids fed to the model, end to end (no segment ids: all are of segment 0).

        `instruction` overrides the recipe's default (VALIDATION if its prompt has no {instruction});
        `max_passage_tokens` first cuts each passage to that many of its own tokens (Cohere's
        `max_tokens_per_doc`). NONE raises VALIDATION naming the first passage whose sequence is over L.
        The prompted pairs are tokenized TOKENIZE_SLICE at a time: TIMEOUT as soon as `deadline` has passed.
        """
        if instruction is not None and not self.recipe.takes_instruction:
            raise instruction_refused()
        if max_passage_tokens is not None:
            passages = self._cut_passages(passages, max_passage_tokens)
        fill = {"query": query, "instruction": self.recipe.instruction if instruction is None else instruction}
        template = self.recipe.prompt.pair
        room = self.max_seq_len - self.fixed_tokens
        prefixes = truncate == "END" and self.cut_long_passages  # END discards a long pair's rest: from a prefix
        pairs = []
        for start in range(0, len(passages), TOKENIZE_SLICE):
            check_deadline(deadline)
            texts = passages[start : start + TOKENIZE_SLICE]
            if prefixes:
                pairs += encode_prefixes(self.tokenizer, texts, room, frame=lambda p: template.format(passage=p, **fill),
                                         fast=False)  # fmt: skip
            else:
                pairs += self.tokenizer.encode_batch([template.format(passage=p, **fill) for p in texts],
                                                     add_special_tokens=False)  # fmt: skip
        sequences = []
        for index, pair in enumerate(pairs):
            if len(pair.ids) > room:
                if truncate != "END":
                    raise pair_too_long(index=index, pair_len=len(pair.ids) + self.fixed_tokens,
                                        limit=self.max_seq_len, prompted=True)  # fmt: skip
                pair.truncate(room)
            sequences.append(self._sequence(pair))
        lengths = np.fromiter(map(len, sequences), dtype=np.int32, count=len(sequences))
        ids = np.fromiter(chain.from_iterable(sequences), dtype=IDS, count=int(lengths.sum()))
        return EncodedPairs(ids, None, lengths)

    def encode_windows(
        self,
        query: str,
        passages: Sequence[str],
        truncate: str,
        max_passage_tokens: int | None = None,
        instruction: str | None = None,
        *,
        max_windows: int = 1,
        overlap: int = 0,
        max_total: int | None = None,
        deadline: float | None = None,
    ) -> tuple[EncodedPairs, Windows | None]:
        """`encode`, with each passage longer than fits beside the query scored as up to `max_windows` windows
        (`max_total` in all, 413 beyond, before any sequence is built):
        windows of the passage's own tokens (worker/text/windows.py), each filled into the pair as the passage's
        characters from its first token's start to its last token's end. Windows are sized to fit, and END cuts
        what the pair's own tokenization adds at their edges. None: one sequence a passage."""
        if max_windows > 1:
            if max_passage_tokens is not None:
                passages, max_passage_tokens = self._cut_passages(passages, max_passage_tokens), None
            fill = {"query": query, "instruction": self.recipe.instruction if instruction is None else instruction}
            empty_pair = self.tokenizer.encode(self.recipe.prompt.pair.format(passage="", **fill), add_special_tokens=False)
            room = self.max_seq_len - self.fixed_tokens - len(empty_pair.ids)
            encodings = self.tokenizer.encode_batch(list(passages), add_special_tokens=False)
            lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
            if room > 0 and (lengths > room).any():
                windows = plan_windows(lengths, room=room, max_windows=max_windows, overlap=overlap, truncate=truncate,
                                       max_total=max_total)  # fmt: skip
                texts = [
                    passages[owner] if length == lengths[owner] else
                    passages[owner][encodings[owner].offsets[start][0] : encodings[owner].offsets[start + length - 1][1]]
                    for owner, start, length in zip(windows.owners.tolist(), windows.offsets.tolist(), windows.lengths.tolist())
                ]  # fmt: skip
                return self.encode(query, texts, "END", instruction=instruction, deadline=deadline), windows
        return self.encode(query, passages, truncate, max_passage_tokens, instruction, deadline=deadline), None

    def _sequence(self, pair: Encoding) -> list[int]:
        if not self.recipe.special_tokens:
            return self._prefix.ids + pair.ids + self._suffix.ids
        merged = Encoding.merge([self._prefix, pair, self._suffix], growing_offsets=True)
        return self.tokenizer.post_process(merged, None, add_special_tokens=True).ids

    def _cut_passages(self, passages: Sequence[str], keep: int) -> list[str]:
        """Each passage cut after its `keep`-th token (as text, up to that token's last character)."""
        cut = []
        for passage, encoding in zip(passages, self.tokenizer.encode_batch(list(passages), add_special_tokens=False)):
            cut.append(passage[: encoding.offsets[keep - 1][1]] if len(encoding.ids) > keep else passage)
        return cut
