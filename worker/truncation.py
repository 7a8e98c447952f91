"""How much of a (query, passage) pair is kept under the token limit L (API.md, "Truncation")."""

from __future__ import annotations

from typing import NamedTuple

from shared.errors import ErrorType, RerankError


class Kept(NamedTuple):
    """Tokens kept from the query and from the passage (special tokens not included)."""

    query: int
    passage: int


def fit_pair(*, index: int, query_len: int, passage_len: int, specials: int, limit: int, truncate: str) -> Kept:
    """Apply NONE or END truncation to one pair.

    NONE: a pair longer than `limit` is an error naming the passage, its length and the limit.
    END: the passage loses tokens from its end until the pair fits; when the query alone leaves no room,
    the passage is emptied and the query is cut from its end.
    """
    pair_len = query_len + passage_len + specials
    if pair_len <= limit:
        return Kept(query_len, passage_len)
    if truncate == "NONE":
        raise pair_too_long(index=index, pair_len=pair_len, limit=limit)
    room = limit - specials - query_len
    if room >= 0:
        return Kept(query_len, room)
    return Kept(max(limit - specials, 0), 0)


def pair_too_long(*, index: int, pair_len: int, limit: int, prompted: bool = False) -> RerankError:
    """The NONE truncation error for passage `index`, whose pair is `pair_len` tokens (special tokens included;
    `prompted`: the whole sequence of a prompt recipe, prompt included)."""
    what = "the sequence of the (query, passage) pair, prompt included," if prompted else "the (query, passage) pair"
    return RerankError(
        ErrorType.VALIDATION,
        f"passage {index}: {what} is {pair_len} tokens long, over the model's limit of "
        f"{limit} tokens; send truncate=END to cut passages to fit, or shorten them",
    )
