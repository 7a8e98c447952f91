"""The micro-batcher with a fake model: packing, ordering, budgets, fairness and failures."""

import threading
import time
from dataclasses import dataclass

import pytest

from worker.batching import MicroBatcher


@dataclass(frozen=True)
class Pair:
    length: int
    value: float


class FakeModel:
    """Scores a pair as its value; records every batch; can be held to let requests pile up."""

    def __init__(self) -> None:
        self.batches: list[list[Pair]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next = False

    def score(self, pairs):
        self.gate.wait(5)
        self.batches.append(list(pairs))
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("boom")
        return [p.value for p in pairs]


@pytest.fixture
def model():
    return FakeModel()


def pairs(*lengths, base=0.0):
    return [Pair(length, base + i) for i, length in enumerate(lengths)]


def test_scores_come_back_in_each_requests_own_order(model):
    batcher = MicroBatcher(model.score, max_batch_tokens=1000).start()
    request = pairs(30, 5, 17, 2, base=10)
    assert batcher.submit(request).result(5) == [10.0, 11.0, 12.0, 13.0]
    batcher.close()


def test_a_lone_request_is_scored_at_once_without_waiting_for_company(model):
    batcher = MicroBatcher(model.score, max_batch_tokens=1000).start()
    started = time.perf_counter()
    batcher.submit(pairs(4)).result(5)
    assert time.perf_counter() - started < 0.05
    batcher.close()


def test_pairs_of_concurrent_requests_share_batches_sorted_by_length(model):
    model.gate.clear()  # hold the model so that requests pile up behind the first pass
    batcher = MicroBatcher(model.score, max_batch_tokens=10_000).start()
    first = batcher.submit(pairs(3))
    time.sleep(0.05)
    futures = [batcher.submit(pairs(9, 2, 6, base=100 * r)) for r in range(5)]
    model.gate.set()
    assert first.result(5) == [0.0]
    assert [f.result(5) for f in futures] == [[100.0 * r, 100.0 * r + 1, 100.0 * r + 2] for r in range(5)]
    shared = model.batches[1]
    assert len(shared) == 15  # all five requests in one pass
    assert [p.length for p in shared] == sorted(p.length for p in shared)
    assert batcher.stats.shared_batches == 1
    assert batcher.stats.max_requests_in_batch == 5
    batcher.close()


def test_batches_respect_the_token_budget_counted_with_padding(model):
    model.gate.clear()
    batcher = MicroBatcher(model.score, max_batch_tokens=100).start()
    blocker = batcher.submit(pairs(1))
    time.sleep(0.05)
    future = batcher.submit(pairs(*([10] * 25), 40, 40))
    model.gate.set()
    blocker.result(5)
    future.result(5)
    for batch in model.batches:
        assert len(batch) == 1 or max(p.length for p in batch) * len(batch) <= 100
    assert sum(len(b) for b in model.batches) == 28
    assert batcher.stats.padded_tokens >= batcher.stats.real_tokens == 1 + 250 + 80
    batcher.close()


def test_a_pair_longer_than_the_budget_still_runs_alone(model):
    batcher = MicroBatcher(model.score, max_batch_tokens=64).start()
    assert batcher.submit(pairs(500)).result(5) == [0.0]
    batcher.close()


def test_the_oldest_pair_is_always_in_the_next_batch(model):
    """A long pair is not starved by shorter pairs that keep arriving."""
    model.gate.clear()
    batcher = MicroBatcher(model.score, max_batch_tokens=50).start()
    blocker = batcher.submit(pairs(1))
    time.sleep(0.05)
    long_one = batcher.submit(pairs(50))
    shorts = [batcher.submit(pairs(5, 5, 5)) for _ in range(10)]
    model.gate.set()
    long_one.result(5)
    for future in shorts:
        future.result(5)
    blocker.result(5)
    lengths = [[p.length for p in batch] for batch in model.batches]
    assert lengths[1] == [50]  # the batch right after the blocker holds the oldest pending pair


def test_a_failed_forward_pass_fails_its_requests_and_the_batcher_goes_on(model):
    batcher = MicroBatcher(model.score, max_batch_tokens=1000).start()
    model.fail_next = True
    with pytest.raises(RuntimeError, match="boom"):
        batcher.submit(pairs(3)).result(5)
    assert batcher.submit(pairs(3, base=7)).result(5) == [7.0]
    batcher.close()


def test_an_empty_request_resolves_at_once(model):
    batcher = MicroBatcher(model.score, max_batch_tokens=1000).start()
    assert batcher.submit([]).result(1) == []
    assert model.batches == []
    batcher.close()


def test_close_finishes_submitted_pairs_then_refuses_new_ones(model):
    batcher = MicroBatcher(model.score, max_batch_tokens=1000).start()
    future = batcher.submit(pairs(3, 4))
    batcher.close()
    assert future.result(1) == [0.0, 1.0]
    with pytest.raises(RuntimeError):
        batcher.submit(pairs(1))


def test_interactive_pairs_go_ahead_of_background_pairs_which_run_in_smaller_batches(model):
    model.gate.clear()
    batcher = MicroBatcher(model.score, max_batch_tokens=1000, background_batch_tokens=40).start()
    blocker = batcher.submit(pairs(1))
    time.sleep(0.05)
    job = batcher.submit(pairs(*([10] * 12), base=100), background=True)
    interactive = batcher.submit(pairs(10, 10, 10, base=200))
    model.gate.set()
    assert interactive.result(5) == [200.0, 201.0, 202.0]
    assert job.result(5) == [100.0 + i for i in range(12)]
    blocker.result(5)
    values = [[p.value for p in batch] for batch in model.batches]
    assert values[1] == [200.0, 201.0, 202.0]  # submitted after the job, scored before it
    job_batches = values[2:]
    assert all(len(batch) <= 4 for batch in job_batches)  # 40-token budget: at most 4 pairs of 10
    assert sorted(v for batch in job_batches for v in batch) == [100.0 + i for i in range(12)]


def test_background_batches_are_sized_by_measured_throughput():
    """At 10,000 tokens/s and a 20 ms target, background batches hold about 200 tokens."""
    batches = []

    def slow_score(batch):
        batches.append(list(batch))
        time.sleep(max(p.length for p in batch) * len(batch) / 10_000)
        return [p.value for p in batch]

    batcher = MicroBatcher(
        slow_score, max_batch_tokens=4000, background_batch_tokens=4000, background_forward_seconds=0.02
    ).start()
    batcher.submit(pairs(*([50] * 40))).result(10)  # interactive: measures the rate, 4000-token batches
    assert max(len(b) for b in batches) > 20
    batches.clear()
    batcher.submit(pairs(*([50] * 40)), background=True).result(10)
    assert all(len(b) <= 5 for b in batches)  # about 200 tokens: 4 pairs of 50 (5 with timing noise)
    batcher.close()


def test_stats_count_batches_by_size_and_padded_tokens_in_power_of_two_buckets(model):
    batcher = MicroBatcher(model.score, max_batch_tokens=10_000).start()
    batcher.submit(pairs(3)).result(5)  # 1 pair, 3 padded tokens
    batcher.submit(pairs(5, 9, 9)).result(5)  # 3 pairs, 27 padded tokens
    batcher.close()
    stats = batcher.stats.as_dict()
    assert stats["batch_pairs_histogram"] == {"1": 1, "4": 1}
    assert stats["batch_tokens_histogram"] == {"4": 1, "32": 1}
    assert stats["padded_tokens"] == 30 and stats["real_tokens"] == 26
