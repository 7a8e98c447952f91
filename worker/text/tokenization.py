"""How a request's (query, passage) pairs become the model's tokens, as compact arrays.

The worker's Celery process tokenizes; the engine process only ever sees the result: every pair's token
ids end to end (`EncodedPairs`), never one Python object per pair. The tokenizer is the model's own
(`tokenizers`, as the engine's transformers tokenizer hands it over), so this module needs no torch.

The query is tokenized once per request and each passage alone (`encode_batch_fast`, in Rust without the
GIL), then pairs are assembled from the tokenizer's templates (`[CLS] query [SEP] passage [SEP]` for BERT,
`<s> query </s></s> passage </s>` for RoBERTa) in whole-array operations. At load the assembly is checked
against the tokenizer's own pair encoding on probe pairs; a tokenizer whose specials are not a fixed
template is used through its own post-processor, pair by pair. NONE/END truncation: worker/text/truncation.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import chain
from typing import Sequence

import numpy as np
from tokenizers import Encoding, Tokenizer

from shared.errors import ErrorType, RerankError, instruction_refused
from worker.text.prefix import encode_prefixes
from worker.text.truncation import fit_pairs
from worker.text.windows import Windows, plan_windows

IDS = np.int32  # token ids on the wire; segment ids are int8
TYPES = np.int8
_PROBES = (("what is the capital of france", "paris is the capital and largest city of france"),
           ("a b", "c d e f g h i j k l m n o p q r s t u v w x y z"), ("x", ""))  # fmt: skip


def check_deadline(deadline: float | None) -> None:
    """TIMEOUT once a request's deadline (unix time; None: none) has passed: tokenizing it further is wasted."""
    if deadline is not None and time.time() > deadline:
        raise RerankError(ErrorType.TIMEOUT, "the request's deadline passed before it was scored")


@dataclass(frozen=True, slots=True)
class EncodedPairs:
    """One request's pairs as the model takes them: token ids of every pair end to end (special tokens
    included), segment ids alike (None for a model that takes none), and each pair's length."""

    input_ids: np.ndarray  # int32 [tokens]
    type_ids: np.ndarray | None  # int8 [tokens]
    lengths: np.ndarray  # int32 [pairs]

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def starts(self) -> np.ndarray:
        """Index of each pair's first token in `input_ids`."""
        lengths = self.lengths.astype(np.int64)
        return np.cumsum(lengths) - lengths

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Token ids and segment ids of pair `index`."""
        start = int(self.starts[index])
        end = start + int(self.lengths[index])
        return self.input_ids[start:end], None if self.type_ids is None else self.type_ids[start:end]

    @classmethod
    def concat(cls, parts: Sequence["EncodedPairs"]) -> "EncodedPairs":
        """The pairs of several parts, one after the other (all with segment ids, or none)."""
        types = [part.type_ids for part in parts]
        return cls(
            np.concatenate([part.input_ids for part in parts]),
            None if types[0] is None else np.concatenate(types),
            np.concatenate([part.lengths for part in parts]),
        )

    def take(self, rows: np.ndarray) -> "EncodedPairs":
        """The pairs at `rows`, in that order."""
        index = token_index(self.starts[rows], self.lengths[rows])
        types = None if self.type_ids is None else self.type_ids[index]
        return EncodedPairs(self.input_ids[index], types, self.lengths[rows])


def token_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices of the tokens of segments (start, length) of a flat array, segment after segment."""
    lengths = np.asarray(lengths, dtype=np.int64)
    within = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(np.asarray(starts, dtype=np.int64), lengths) + within


@dataclass(frozen=True, slots=True)
class _Template:
    """What the post-processor puts around the query (and the passage): `before query between passage after`."""

    before: tuple[np.ndarray, np.ndarray]  # (ids, segment ids)
    between: tuple[np.ndarray, np.ndarray]
    after: tuple[np.ndarray, np.ndarray]
    query_type: int
    passage_type: int

    @property
    def specials(self) -> int:
        return len(self.before[0]) + len(self.between[0]) + len(self.after[0])

    @classmethod
    def read(cls, tokenizer: Tokenizer, query: Encoding, passage: Encoding | None) -> "_Template | None":
        """The template, read off the post-processed probe; None if the probe's tokens do not appear in it whole."""
        processed = tokenizer.post_process(query, passage, add_special_tokens=True)
        ids, types = processed.ids, processed.type_ids
        q, p = query.ids, passage.ids if passage is not None else []
        for i in range(len(ids) - len(q) + 1):
            if ids[i : i + len(q)] != q:
                continue
            for j in range(i + len(q), len(ids) - len(p) + 1):
                if ids[j : j + len(p)] == p:
                    q_types, p_types = set(types[i : i + len(q)]), set(types[j : j + len(p)])
                    if len(q_types) != 1 or len(p_types) > 1:
                        return None
                    cut = [(0, i), (i + len(q), j), (j + len(p), len(ids))]
                    parts = [(np.array(ids[a:b], dtype=IDS), np.array(types[a:b], dtype=TYPES)) for a, b in cut]
                    return cls(*parts, query_type=q_types.pop(), passage_type=p_types.pop() if p_types else 0)
                if passage is None:
                    break
        return None


class PairTokenizer:
    """The model's tokenizer turned into a pair encoder under the token limit L (`max_seq_len`)."""

    def __init__(self, tokenizer: Tokenizer, *, max_seq_len: int, uses_type_ids: bool) -> None:
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())  # a private copy, without truncation or padding
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.max_seq_len = max_seq_len
        self.uses_type_ids = uses_type_ids
        self.pair_specials = self.tokenizer.num_special_tokens_to_add(is_pair=True)
        self._templates = self._exact_templates()
        self.cut_long_passages = True  # END: tokenize an over-long passage from a prefix (worker/text/prefix.py)

    def _exact_templates(self) -> tuple[_Template, _Template] | None:
        """The pair and single templates, if assembling from them gives exactly the tokenizer's own encodings."""
        query, passage = (self.tokenizer.encode(text, add_special_tokens=False) for text in _PROBES[0])
        templates = _Template.read(self.tokenizer, query, passage), _Template.read(self.tokenizer, query, None)
        if None in templates or templates[0].specials != self.pair_specials:
            return None
        for query_text, passage_text in _PROBES:
            want = self.tokenizer.encode(query_text, passage_text) if passage_text else self.tokenizer.encode(query_text)
            got, _ = self._assemble(templates, self._query_ids(query_text), [passage_text], "NONE", None, limit=None)
            if got.input_ids.tolist() != want.ids or (self.uses_type_ids and got.type_ids.tolist() != want.type_ids):
                return None
        return templates

    def _query_ids(self, query: str) -> np.ndarray:
        return np.array(self.tokenizer.encode(query, add_special_tokens=False).ids, dtype=IDS)

    def encode(
        self,
        query: str,
        passages: Sequence[str],
        truncate: str,
        max_passage_tokens: int | None = None,
        instruction: str | None = None,
    ) -> EncodedPairs:
        """Tokenize one request's pairs and apply NONE/END truncation (RerankError for NONE).

        `max_passage_tokens` first cuts every passage to that many tokens (Cohere's `max_tokens_per_doc`).
        An empty passage is encoded as the query alone, as transformers' `tokenizer(query, "")` does. A plain
        pair encoding has no {instruction}: an `instruction` is refused (VALIDATION).
        """
        return self.encode_windows(query, passages, truncate, max_passage_tokens, instruction)[0]

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
        (worker/text/windows.py), `max_total` in all (413 beyond, before any pair is built): the windows' pairs,
        and which passage each is of (None: one pair each). TIMEOUT if `deadline` has passed before it
        starts."""
        if instruction is not None:
            raise instruction_refused()
        check_deadline(deadline)
        if self._templates is None:
            return self._pair_by_pair(query, passages, truncate, max_passage_tokens, max_windows, overlap,
                                      max_total=max_total)  # fmt: skip
        return self._assemble(self._templates, self._query_ids(query), passages, truncate, max_passage_tokens,
                              limit=self.max_seq_len, max_windows=max_windows, overlap=overlap,
                              max_total=max_total)  # fmt: skip

    def _passages(
        self, passages: Sequence[str], max_passage_tokens: int | None, keep: int | None = None
    ) -> tuple[np.ndarray, ...]:
        """Every passage's tokens end to end, where each starts, and how many each has (at most `max_passage_tokens`).
        `keep`: no more than that many of a passage's tokens will be used, so a long one is tokenized from a prefix."""
        if keep is not None and self.cut_long_passages:
            keep = keep if max_passage_tokens is None else min(keep, max_passage_tokens)
            encodings = encode_prefixes(self.tokenizer, passages, max(keep, 0))
        else:
            encodings = self.tokenizer.encode_batch_fast(list(passages), add_special_tokens=False)
        lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
        flat = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=IDS, count=int(lengths.sum()))
        starts = np.cumsum(lengths) - lengths
        if max_passage_tokens is not None:
            lengths = np.minimum(lengths, max_passage_tokens)  # the first tokens of each are kept
        return flat, starts, lengths

    def _assemble(
        self, templates: tuple[_Template, _Template], query_ids: np.ndarray, passages: Sequence[str], truncate: str,
        max_passage_tokens: int | None, *, limit: int | None, max_windows: int = 1, overlap: int = 0,
        max_total: int | None = None,
    ) -> tuple[EncodedPairs, Windows | None]:  # fmt: skip
        """Every pair built from the templates in whole-array operations, after truncation to `limit` (None: none)
        or, where `max_windows` allows it, cut into windows."""
        pair, single = templates
        query_len, windows = len(query_ids), None
        room = (limit or 0) - pair.specials - query_len
        ends_cut = limit is not None and truncate == "END" and max_windows <= 1  # END discards a long passage's rest
        flat, passage_starts, lengths = self._passages(passages, max_passage_tokens, room if ends_cut else None)
        empty = np.fromiter(map(len, passages), dtype=np.int64, count=len(passages)) == 0  # the query alone
        kept = lengths
        if limit is not None and max_windows > 1 and room > 0 and (lengths > room).any():
            windows = plan_windows(lengths, room=room, max_windows=max_windows, overlap=overlap, truncate=truncate,
                                   max_total=max_total)  # fmt: skip
            passage_starts, kept, empty = passage_starts[windows.owners] + windows.offsets, windows.lengths, empty[windows.owners]
        elif limit is not None:
            query_len, kept = fit_pairs(query_len=query_len, passage_lens=lengths, specials=pair.specials, limit=limit,
                                        truncate=truncate)  # fmt: skip
        query = query_ids[:query_len], np.full(query_len, pair.query_type, dtype=TYPES)
        head = _join(pair.before, query, pair.between)
        alone = _join(single.before, (query[0], np.full(query_len, single.query_type, dtype=TYPES)), single.after)
        kept = np.where(empty, 0, kept)
        head_lens = np.where(empty, len(alone[0]), len(head[0]))
        tail_lens = np.where(empty, 0, len(pair.after[0]))
        pair_lens = head_lens + kept + tail_lens
        starts = np.cumsum(pair_lens) - pair_lens
        out = np.empty(int(pair_lens.sum()), dtype=IDS), np.empty(int(pair_lens.sum()), dtype=TYPES)
        full = np.flatnonzero(~empty)
        _put(out, starts[full], head)
        _put(out, starts[full] + len(head[0]) + kept[full], pair.after)
        _put(out, starts[empty], alone)
        at = token_index(starts + head_lens, kept)
        out[0][at] = flat[token_index(passage_starts, kept)]
        out[1][at] = pair.passage_type
        return EncodedPairs(out[0], out[1] if self.uses_type_ids else None, pair_lens.astype(np.int32)), windows

    def _pair_by_pair(
        self, query: str, passages: Sequence[str], truncate: str, max_passage_tokens: int | None, max_windows: int,
        overlap: int, *, max_total: int | None = None,
    ) -> tuple[EncodedPairs, Windows | None]:  # fmt: skip
        """The tokenizer's own post-processor on every pair (tokenizers whose specials are not a fixed template);
        windows are the tokenizer's own overflowing pieces, cut where `plan_windows` says."""
        query_enc = self.tokenizer.encode(query, add_special_tokens=False)
        passage_encs = self.tokenizer.encode_batch(list(passages), add_special_tokens=False)
        lengths = np.fromiter((len(e) for e in passage_encs), dtype=np.int64, count=len(passage_encs))
        if max_passage_tokens is not None:
            lengths = np.minimum(lengths, max_passage_tokens)
        room = self.max_seq_len - self.pair_specials - len(query_enc)
        windows = None
        if max_windows > 1 and room > 0 and (lengths > room).any():
            windows = plan_windows(lengths, room=room, max_windows=max_windows, overlap=overlap, truncate=truncate,
                                   max_total=max_total)  # fmt: skip
            pieces = []
            for encoding, length, count in zip(passage_encs, lengths.tolist(), np.bincount(windows.owners).tolist()):
                encoding.truncate(length)
                if length > room:
                    encoding.truncate(room, stride=min(overlap, room // 2))
                pieces += [encoding, *encoding.overflowing][:count]
            texts = [passages[i] for i in windows.owners.tolist()]
        else:
            query_len, kept = fit_pairs(query_len=len(query_enc), passage_lens=lengths, specials=self.pair_specials,
                                        limit=self.max_seq_len, truncate=truncate)  # fmt: skip
            query_enc.truncate(query_len)
            for encoding, keep in zip(passage_encs, kept.tolist()):
                encoding.truncate(keep)  # truncating to 0 keeps an encoding of no tokens
            pieces, texts = passage_encs, passages
        merged = [self.tokenizer.post_process(query_enc, piece if text else None, add_special_tokens=True)
                  for piece, text in zip(pieces, texts)]  # fmt: skip
        pair_lens = np.fromiter(map(len, merged), dtype=np.int32, count=len(merged))
        ids = np.fromiter(chain.from_iterable(m.ids for m in merged), dtype=IDS, count=int(pair_lens.sum()))
        types = np.fromiter(chain.from_iterable(m.type_ids for m in merged), dtype=TYPES, count=len(ids))
        return EncodedPairs(ids, types if self.uses_type_ids else None, pair_lens), windows


def _join(*parts: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _put(out: tuple[np.ndarray, np.ndarray], starts: np.ndarray, piece: tuple[np.ndarray, np.ndarray]) -> None:
    """Write the same `piece` (ids, segment ids) at each of `starts` of the flat output."""
    at = token_index(starts, np.full(len(starts), len(piece[0])))
    out[0][at] = np.tile(piece[0], len(starts))
    out[1][at] = np.tile(piece[1], len(starts))
