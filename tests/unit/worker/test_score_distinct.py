"""Identical pairs of one request are scored once and get one logit."""

import numpy as np
import pytest

from worker.batching import DeadlineExceeded, MicroBatcher
from worker.runtime import EncodedPair
from worker.tasks import score_distinct


def pair(*ids: int) -> EncodedPair:
    return EncodedPair(np.array(ids, dtype=np.int64), np.zeros(len(ids), dtype=np.int64))


class RowModel:
    """Scores each pair by its row in the batch, as a batched pass may differ from row to row."""

    def __init__(self) -> None:
        self.scored: list[EncodedPair] = []

    def score(self, pairs):
        self.scored += pairs
        return [float(pair.input_ids.sum()) + row / 1000 for row, pair in enumerate(pairs)]


@pytest.fixture
def model():
    return RowModel()


@pytest.fixture
def batcher(model):
    batcher = MicroBatcher(model.score, max_batch_tokens=1000).start()
    yield batcher
    batcher.close()


def test_twins_are_scored_once_and_get_the_same_score(model, batcher):
    pairs = [pair(1, 2), pair(5), pair(1, 2), pair(1, 3), pair(5)]
    scores = score_distinct(batcher, pairs).result(5)
    assert len(model.scored) == 3
    assert scores[0] == scores[2] and scores[1] == scores[4]
    assert len(set(scores)) == 3
    assert [round(s) for s in scores] == [3, 5, 3, 4, 5]


def test_segment_ids_tell_pairs_apart(model, batcher):
    a = pair(1, 2)
    b = EncodedPair(a.input_ids.copy(), np.array([0, 1], dtype=np.int64))
    score_distinct(batcher, [a, b]).result(5)
    assert len(model.scored) == 2


def test_a_request_without_twins_is_submitted_as_it_is(model, batcher):
    pairs = [pair(1), pair(2)]
    assert score_distinct(batcher, pairs).result(5) == [1.0, 2.001]


def test_a_failure_reaches_the_caller(batcher):
    future = score_distinct(batcher, [pair(1), pair(1)], deadline=0.0)
    with pytest.raises(DeadlineExceeded):
        future.result(5)
