"""Over-long passages tokenized from a prefix when END truncation will discard the rest of them.

A 5,000-word passage scored under a 512-token limit keeps its first few hundred tokens; tokenizing the other
~6,000 is CPU the worker spends for nothing, and on a GPU host tokenizing is what feeds the device. So a
passage longer than CHARS_PER_TOKEN characters per token it can keep is cut, at whitespace, before the
tokenizer sees it, and the prefix's tokens are used only where they settle the kept tokens:

- the cut falls at whitespace, where every tokenizer's pre-tokenizer (WordPiece, SentencePiece's Metaspace,
  byte-level BPE) starts a new piece, so text after it cannot change the tokens before it;
- and, so that no tokenizer's edge effects at the cut can reach them, the kept tokens must lie at least
  SLACK_TOKENS tokens before it: a prefix whose tokens ending before the cut number fewer than the kept
  tokens plus SLACK_TOKENS is tokenized again with twice the characters, up to the whole passage.

A passage with no whitespace in its prefix is tokenized whole. Parity with the uncut path:
tests/unit/worker/text/test_prefix.py (BERT WordPiece, XLM-R Unigram, a prompt recipe's byte-level BPE).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Callable, Sequence

from tokenizers import Encoding, Tokenizer

CHARS_PER_TOKEN = 12  # generous: English prose runs 4-6 characters a token, a list of long words 8-9 (one round)
SLACK_TOKENS = 16
_WHITESPACE = (" ", "\n", "\t", "\r")
_MARK = "\x00passage\x00"


def encode_prefixes(
    tokenizer: Tokenizer, passages: Sequence[str], keep: int, *, frame: Callable[[str], str] | None = None,
    fast: bool = True,
) -> list[Encoding]:  # fmt: skip
    """Encodings (no special tokens) of `frame(passage)` for each passage (`frame`: the text a passage is
    tokenized in, e.g. a prompt; None: the passage alone), of which only the first `keep` tokens will be used
    where there are more. `fast`: without offsets for the passages tokenized whole (encode_batch_fast)."""
    frame = frame or _alone
    head = frame(_MARK).index(_MARK)  # where the passage starts in its framed text
    encodings: list[Encoding | None] = [None] * len(passages)
    limits = {i: CHARS_PER_TOKEN * (keep + SLACK_TOKENS) for i, passage in enumerate(passages)}
    while limits:
        cuts = {i: _cut(passages[i], limit) for i, limit in limits.items()}
        tried = [i for i, cut in cuts.items() if cut is not None]
        if not tried:
            break
        for i, encoding in zip(tried, tokenizer.encode_batch([frame(cuts[i]) for i in tried], add_special_tokens=False)):
            ends = [end for _, end in encoding.offsets]
            if bisect_right(ends, head + len(cuts[i])) >= keep + SLACK_TOKENS:
                encodings[i] = encoding
        limits = {i: 2 * limits[i] for i in tried if encodings[i] is None}
    whole = [i for i, encoding in enumerate(encodings) if encoding is None]
    if not whole:
        return encodings
    encode = tokenizer.encode_batch_fast if fast else tokenizer.encode_batch
    for i, encoding in zip(whole, encode([frame(passages[i]) for i in whole], add_special_tokens=False)):
        encodings[i] = encoding
    return encodings


def _alone(passage: str) -> str:
    return passage


def _cut(text: str, limit: int) -> str | None:
    """`text` up to its last whitespace within `limit` characters; None: tokenize it whole (it is no longer,
    or has no whitespace there)."""
    if len(text) <= limit:
        return None
    at = max(text.rfind(space, 0, limit) for space in _WHITESPACE)
    return text[:at] if at > 0 else None
