"""Identical pairs of one request are scored once and get one logit."""

from concurrent.futures import Future

import numpy as np
import pytest

from worker.engine.client import DeadlineExceeded
from worker.tasks.app import score_distinct
from worker.text import distinct
from worker.text.distinct import distinct_pairs
from worker.text.tokenization import EncodedPairs


def encoded(*pairs: tuple[int, ...], types: list[tuple[int, ...]] | None = None) -> EncodedPairs:
    ids = np.array([t for pair in pairs for t in pair], dtype=np.int32)
    type_ids = np.array([t for pair in types for t in pair], dtype=np.int8) if types else np.zeros(len(ids), np.int8)
    return EncodedPairs(ids, type_ids, np.array([len(p) for p in pairs], dtype=np.int32))


class RowEngine:
    """Scores each pair by its token sum plus its row / 1000, as rows of a batched pass may differ."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.scored: list[list[int]] = []
        self.fail = fail

    def score(self, pairs: EncodedPairs, **options) -> Future:
        future: Future = Future()
        if self.fail is not None:
            future.set_exception(self.fail)
            return future
        rows = [pairs.pair(i)[0].tolist() for i in range(len(pairs))]
        self.scored += rows
        future.set_result(np.array([sum(row) + i / 1000 for i, row in enumerate(rows)], dtype=np.float64))
        return future


def test_twins_are_scored_once_and_get_the_same_score():
    engine = RowEngine()
    scores = score_distinct(engine, encoded((1, 2), (5,), (1, 2), (1, 3), (5,))).result(5)
    assert engine.scored == [[1, 2], [5], [1, 3]]  # distinct pairs, in request order
    assert scores[0] == scores[2] and scores[1] == scores[4]
    assert len(set(scores.tolist())) == 3
    assert [round(s) for s in scores] == [3, 5, 3, 4, 5]


def test_segment_ids_tell_pairs_apart():
    engine = RowEngine()
    score_distinct(engine, encoded((1, 2), (1, 2), types=[(0, 0), (0, 1)])).result(5)
    assert len(engine.scored) == 2


def test_a_request_without_twins_is_sent_as_it_is():
    engine = RowEngine()
    assert score_distinct(engine, encoded((1,), (2,))).result(5).tolist() == [1.0, 2.001]


def test_a_failure_reaches_the_caller():
    future = score_distinct(RowEngine(fail=DeadlineExceeded()), encoded((1,), (1,)))
    with pytest.raises(DeadlineExceeded):
        future.result(5)


def test_a_hash_collision_never_merges_two_pairs(monkeypatch):
    """Pairs whose hashes agree are compared token by token: here every pair hashes alike."""
    monkeypatch.setattr(distinct, "_pair_hashes", lambda pairs: np.zeros(len(pairs), dtype=np.uint64))
    rows, groups = distinct_pairs(encoded((1, 2), (3,), (1, 2), (4, 5)))
    assert rows.tolist() == [0, 1, 3]
    assert groups.tolist() == [0, 1, 0, 2]


def test_pairs_of_different_lengths_and_the_same_tokens_are_apart():
    rows, groups = distinct_pairs(encoded((7,), (7, 7), (7,), (7, 7, 7)))
    assert rows.tolist() == [0, 1, 3] and groups.tolist() == [0, 1, 0, 2]
