"""The micro-batcher drops pairs whose request's deadline passed before a batch is formed."""

import time

import pytest

from tests.unit.worker.test_batching import FakeModel, Pair
from worker.batching import DeadlineExceeded, MicroBatcher


def test_pairs_past_their_deadline_are_never_scored():
    model = FakeModel()
    batcher = MicroBatcher(model.score, max_batch_tokens=1000).start()
    try:
        model.gate.clear()  # the model is busy with a first request
        busy = batcher.submit([Pair(4, 1.0)])
        time.sleep(0.05)
        expiring = batcher.submit([Pair(4, 2.0), Pair(4, 3.0)], deadline=time.time() + 0.1)
        patient = batcher.submit([Pair(4, 4.0)], deadline=time.time() + 60)
        timeless = batcher.submit([Pair(4, 5.0)])
        time.sleep(0.2)  # the first deadline passes while they wait
        model.gate.set()
        assert busy.result(5) == [1.0]
        with pytest.raises(DeadlineExceeded):
            expiring.result(5)
        assert patient.result(5) == [4.0] and timeless.result(5) == [5.0]
        scored = [pair.value for batch in model.batches for pair in batch]
        assert 2.0 not in scored and 3.0 not in scored
    finally:
        batcher.close()


def test_a_background_request_past_its_deadline_is_dropped_too():
    model = FakeModel()
    batcher = MicroBatcher(model.score, max_batch_tokens=1000).start()
    try:
        late = batcher.submit([Pair(4, 1.0)], background=True, deadline=time.time() - 1)
        with pytest.raises(DeadlineExceeded):
            late.result(5)
        assert model.batches == []
    finally:
        batcher.close()
