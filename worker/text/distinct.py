"""Identical pairs of one request, found in whole-array operations, so that each is scored once.

Identical inputs (the same passage twice, or passages that END truncation cut to the same tokens) then get
identical logits, which rows of one batched forward pass do not promise in their last bits, and cost one
pass. Pairs are hashed per token with numpy (a polynomial hash mod 2^64 over token and segment ids, plus
the length); pairs whose hashes agree are compared token by token, so a collision never merges two pairs.
"""

from __future__ import annotations

import numpy as np

from worker.text.tokenization import EncodedPairs

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: its powers mod 2^64 never vanish


def distinct_pairs(pairs: EncodedPairs) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the first pair of each group of identical pairs, and for every pair its group.

    `pairs.take(rows)` are the pairs to score; `scores[groups]` gives every pair its group's score.
    """
    count = len(pairs)
    keys = _pair_hashes(pairs)
    _, rows, groups = np.unique(keys, return_index=True, return_inverse=True)
    if len(rows) == count:
        return np.arange(count), np.arange(count)
    groups = groups.reshape(-1)
    return _split_collisions(pairs, rows, groups)


def _pair_hashes(pairs: EncodedPairs) -> np.ndarray:
    lengths = pairs.lengths.astype(np.int64)
    values = pairs.input_ids.astype(np.uint64) * np.uint64(2)
    if pairs.type_ids is not None:
        values += pairs.type_ids.astype(np.uint64)
    positions = np.arange(len(values), dtype=np.int64) - np.repeat(pairs.starts, lengths)
    powers = np.cumprod(np.full(int(lengths.max(initial=0)) + 1, _MULTIPLIER, dtype=np.uint64))
    with np.errstate(over="ignore"):
        sums = np.concatenate([[np.uint64(0)], np.cumsum((values + np.uint64(1)) * powers[positions], dtype=np.uint64)])
        return sums[pairs.starts + lengths] - sums[pairs.starts] + lengths.astype(np.uint64) * _MULTIPLIER


def _split_collisions(pairs: EncodedPairs, rows: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups as `np.unique` found them, with every member checked against its group's first pair."""
    first_rows = rows.tolist()
    kept_rows = list(first_rows)
    groups = groups.copy()
    for index in np.flatnonzero(rows[groups] != np.arange(len(groups))).tolist():  # pairs that have a twin before them
        group = int(groups[index])
        if not _same(pairs, index, first_rows[group]):
            kept_rows.append(index)  # a hash collision: a group of its own
            groups[index] = len(kept_rows) - 1
    order = np.argsort(np.array(kept_rows), kind="stable")  # rows in request order, groups renumbered alike
    renumber = np.empty(len(order), dtype=np.int64)
    renumber[order] = np.arange(len(order))
    return np.array(kept_rows)[order], renumber[groups]


def _same(pairs: EncodedPairs, a: int, b: int) -> bool:
    ids_a, types_a = pairs.pair(a)
    ids_b, types_b = pairs.pair(b)
    return np.array_equal(ids_a, ids_b) and (types_a is None or np.array_equal(types_a, types_b))
