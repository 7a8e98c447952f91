"""How much of a (query, passage) pair is kept under the token limit L (API.md, "Truncation")."""

from __future__ import annotations

import numpy as np

from shared.errors import ErrorType, RerankError


def fit_pairs(
    *, query_len: int, passage_lens: np.ndarray, specials: int, limit: int, truncate: str
) -> tuple[int, np.ndarray]:
    """Apply NONE or END truncation to every pair of one request: the query's kept tokens, and each passage's.

    NONE: a pair longer than `limit` is an error naming the (first such) passage, its length and the limit.
    END: passages lose tokens from their end until their pair fits; when the query alone leaves no room,
    the passages are emptied and the query is cut from its end.
    """
    pair_lens = query_len + passage_lens + specials
    too_long = pair_lens > limit
    if not too_long.any():
        return query_len, passage_lens
    if truncate == "NONE":
        index = int(np.argmax(too_long))
        raise pair_too_long(index=index, pair_len=int(pair_lens[index]), limit=limit)
    room = limit - specials - query_len
    if room >= 0:
        return query_len, np.minimum(passage_lens, room)
    return max(limit - specials, 0), np.zeros_like(passage_lens)


def pair_too_long(*, index: int, pair_len: int, limit: int, prompted: bool = False) -> RerankError:
    """The NONE truncation error for passage `index`, whose pair is `pair_len` tokens (special tokens included;
    `prompted`: the whole sequence of a prompt recipe, prompt included)."""
    what = "the sequence of the (query, passage) pair, prompt included," if prompted else "the (query, passage) pair"
    return RerankError(
        ErrorType.VALIDATION,
        f"passage {index}: {what} is {pair_len} tokens long, over the model's limit of "
        f"{limit} tokens; send truncate=END to cut passages to fit, or shorten them",
    )
