"""The micro-batcher on its own: packing, ordering, budgets, fairness, priorities, deadlines and failures.

Each pair's tokens all hold one value, which the fake model gives back as the pair's logit.
"""

import time

import numpy as np

from worker.engine.scheduler import Batch, Request, Scheduler
from worker.text.tokenization import EncodedPairs

_ids = iter(range(1, 1_000_000))


def request(*lengths: int, base: float = 0.0, background: bool = False, deadline: float | None = None) -> Request:
    """A request of pairs of these lengths; pair i's logit will be base + i."""
    ids = np.concatenate([np.full(n, base + i, dtype=np.int32) for i, n in enumerate(lengths)]) if lengths else None
    pairs = EncodedPairs(ids if ids is not None else np.zeros(0, np.int32), None, np.array(lengths, dtype=np.int32))
    return Request(next(_ids), pairs, background, deadline)


def values(batch: Batch) -> list[float]:
    """The fake model: each pair's value (its first token)."""
    return batch.pairs.input_ids[batch.pairs.starts].astype(np.float32).tolist()


def lengths(batch: Batch) -> list[int]:
    return batch.pairs.lengths.tolist()


def run(scheduler: Scheduler, *, tokens_per_second: float | None = None) -> list[Batch]:
    """Score every pending pair as the engine does (expired requests dropped first); the batches, in order."""
    batches = []
    while scheduler.pending():
        scheduler.drop_expired()
        batch = scheduler.next_batch()
        if batch is None:
            break
        batches.append(batch)
        seconds = batch.padded_tokens / tokens_per_second if tokens_per_second else 0.001
        scheduler.complete(batch, np.array(values(batch), dtype=np.float32), seconds)
    return batches


def test_scores_come_back_in_each_requests_own_order():
    scheduler = Scheduler(max_batch_tokens=1000)
    mine = request(30, 5, 17, 2, base=10)
    scheduler.add(mine)
    run(scheduler)
    assert mine.logits.tolist() == [10.0, 11.0, 12.0, 13.0] and mine.unscored == 0


def test_a_lone_request_is_batched_at_once_without_waiting_for_company():
    scheduler = Scheduler(max_batch_tokens=1000)
    scheduler.add(request(4))
    batch = scheduler.next_batch()
    assert batch is not None and lengths(batch) == [4]


def test_pairs_of_concurrent_requests_share_batches_sorted_by_length():
    scheduler = Scheduler(max_batch_tokens=10_000)
    scheduler.add(request(3))
    first = scheduler.next_batch()  # the model is busy with the first request while five more arrive
    later = [request(9, 2, 6, base=100 * r) for r in range(5)]
    for r in later:
        scheduler.add(r)
    scheduler.complete(first, np.array(values(first), np.float32), 0.01)
    shared = scheduler.next_batch()
    assert len(shared.pairs) == 15  # all five requests in one pass
    assert sorted(lengths(shared)) == [2] * 5 + [6] * 5 + [9] * 5
    done = scheduler.complete(shared, np.array(values(shared), np.float32), 0.01)
    assert done == later
    assert [r.logits.tolist() for r in later] == [[100.0 * r, 100.0 * r + 1, 100.0 * r + 2] for r in range(5)]
    assert scheduler.stats.shared_batches == 1
    assert scheduler.stats.max_requests_in_batch == 5


def test_batches_respect_the_token_budget_counted_with_padding():
    scheduler = Scheduler(max_batch_tokens=100)
    scheduler.add(request(1))
    scheduler.add(request(*([10] * 25), 40, 40))
    batches = run(scheduler)
    for batch in batches:
        assert len(batch.pairs) == 1 or batch.padded_tokens <= 100
    assert sum(len(b.pairs) for b in batches) == 28
    assert scheduler.stats.padded_tokens >= scheduler.stats.real_tokens == 1 + 250 + 80


def test_a_pair_longer_than_the_budget_still_runs_alone():
    scheduler = Scheduler(max_batch_tokens=64)
    long_one = request(500)
    scheduler.add(long_one)
    assert [lengths(b) for b in run(scheduler)] == [[500]] and long_one.logits.tolist() == [0.0]


def test_the_oldest_pair_is_always_in_the_next_batch():
    """A long pair is not starved by shorter pairs that keep arriving."""
    scheduler = Scheduler(max_batch_tokens=50)
    scheduler.add(request(1))
    blocker = scheduler.next_batch()
    scheduler.add(request(50))
    for _ in range(10):
        scheduler.add(request(5, 5, 5))
    scheduler.complete(blocker, np.zeros(1, np.float32), 0.001)
    assert lengths(scheduler.next_batch()) == [50]  # the batch right after the blocker holds the oldest pending pair


def test_a_failed_forward_pass_fails_its_requests_and_the_scheduler_goes_on():
    scheduler = Scheduler(max_batch_tokens=1000)
    doomed, fine = request(3), request(3, base=7)
    scheduler.add(doomed)
    assert scheduler.fail(scheduler.next_batch()) == [doomed]
    scheduler.add(fine)
    run(scheduler)
    assert fine.logits.tolist() == [7.0] and not scheduler.pending()


def test_a_failed_pass_drops_the_other_pending_pairs_of_its_requests():
    scheduler = Scheduler(max_batch_tokens=20)
    doomed = request(10, 10, 10, 10)  # two batches of two
    scheduler.add(doomed)
    assert scheduler.fail(scheduler.next_batch()) == [doomed]
    assert not scheduler.pending()


def test_an_empty_request_is_not_queued():
    scheduler = Scheduler(max_batch_tokens=1000)
    scheduler.add(request())
    assert not scheduler.pending() and scheduler.next_batch() is None


def test_interactive_pairs_go_ahead_of_background_pairs():
    scheduler = Scheduler(max_batch_tokens=40, background_batch_tokens=40)
    scheduler.add(request(1))
    blocker = scheduler.next_batch()
    job = request(*([10] * 12), base=100, background=True)
    interactive = request(10, 10, 10, base=200)
    scheduler.add(job)
    scheduler.add(interactive)
    scheduler.complete(blocker, np.zeros(1, np.float32), 0.001)
    batches = run(scheduler)
    assert values(batches[0]) == [200.0, 201.0, 202.0]  # submitted after the job, scored before it
    assert all(len(batch.pairs) <= 4 for batch in batches[1:])  # 40-token budget: at most 4 pairs of 10
    assert job.logits.tolist() == [100.0 + i for i in range(12)]


def test_background_batches_grow_with_measured_throughput_but_never_below_an_interactive_batch():
    """Background batches take about 20 ms at the measured rate, between the interactive budget (200 tokens)
    and their own cap (2,000)."""
    for tokens_per_second, most_pairs in ((1_000, 4), (50_000, 20), (1_000_000, 40)):
        scheduler = Scheduler(max_batch_tokens=200, background_batch_tokens=2000, background_forward_seconds=0.02)
        scheduler.add(request(*([50] * 8)))  # interactive: measures the rate in 200-token batches
        assert all(len(b.pairs) == 4 for b in run(scheduler, tokens_per_second=tokens_per_second))
        scheduler.add(request(*([50] * 400), background=True))
        batches = run(scheduler, tokens_per_second=tokens_per_second)
        assert max(len(b.pairs) for b in batches) == most_pairs, tokens_per_second


def test_cancelled_requests_lose_their_pending_pairs():
    scheduler = Scheduler(max_batch_tokens=20)
    kept, cancelled = request(10, 10, 10, base=1, background=True), request(10, 10, 10, base=5, background=True)
    scheduler.add(kept)
    scheduler.add(cancelled)
    first = scheduler.next_batch()  # two pairs of the first request
    scheduler.cancel([cancelled.request_id, 999])
    scheduler.complete(first, np.zeros(2, np.float32), 0.001)
    batches = run(scheduler)
    assert [values(b) for b in batches] == [[3.0]]
    assert not scheduler.pending()


def test_stats_count_batches_by_size_and_padded_tokens_in_power_of_two_buckets():
    scheduler = Scheduler(max_batch_tokens=10_000)
    scheduler.add(request(3))  # 1 pair, 3 padded tokens
    run(scheduler)
    scheduler.add(request(5, 9, 9))  # 3 pairs, 27 padded tokens
    run(scheduler)
    stats = scheduler.stats.as_dict()
    assert stats["batch_pairs_histogram"] == {"1": 1, "4": 1}
    assert stats["batch_tokens_histogram"] == {"4": 1, "32": 1}
    assert stats["padded_tokens"] == 30 and stats["real_tokens"] == 26


def test_pairs_past_their_deadline_are_never_scored():
    scheduler = Scheduler(max_batch_tokens=1000)
    scheduler.add(request(4, base=1))
    busy = scheduler.next_batch()  # the model is busy with a first request
    expiring = request(4, 4, base=2, deadline=time.time() + 0.05)
    patient = request(4, base=4, deadline=time.time() + 60)
    timeless = request(4, base=5)
    for r in (expiring, patient, timeless):
        scheduler.add(r)
    time.sleep(0.1)  # the first deadline passes while they wait
    scheduler.complete(busy, np.array(values(busy), np.float32), 0.01)
    assert scheduler.drop_expired() == [expiring]
    scored = [value for batch in run(scheduler) for value in values(batch)]
    assert 2.0 not in scored and 3.0 not in scored
    assert patient.logits.tolist() == [4.0] and timeless.logits.tolist() == [5.0]


def test_a_background_request_past_its_deadline_is_dropped_too():
    scheduler = Scheduler(max_batch_tokens=1000)
    late = request(4, background=True, deadline=time.time() - 1)
    scheduler.add(late)
    assert scheduler.drop_expired() == [late] and not scheduler.pending()


def test_a_lone_request_waits_at_most_one_pass_behind_a_large_one():
    """A passage of 16 windows is many passes of pairs; a lone request that arrives meanwhile is in the next one."""
    scheduler = Scheduler(max_batch_tokens=2048)
    large = request(*([512] * 16))  # four passes of four windows
    scheduler.add(large)
    first = scheduler.next_batch()
    assert len(first.pairs) == 4
    scheduler.add(request(512))  # a lone request, arriving while the large one's first pass runs
    scheduler.complete(first, np.zeros(4, np.float32), 0.01)
    second = scheduler.next_batch()
    assert 512 in lengths(second) and any(r is not large for r, _ in second.parts)


def test_a_large_request_still_gets_every_other_pass_while_lone_ones_keep_arriving():
    scheduler = Scheduler(max_batch_tokens=2048)
    large = request(*([512] * 16), base=1)
    scheduler.add(large)
    anchors = []
    while large.unscored:
        scheduler.add(request(600, base=100))  # a newcomer before every pass; it cannot share a 2048 pass of 512s
        batch = scheduler.next_batch()
        anchors.append("large" if batch.parts[0][0] is large else "lone")
        scheduler.complete(batch, np.array(values(batch), np.float32), 0.01)
    assert anchors[:6] == ["large", "lone", "large", "lone", "large", "lone"]


def gpu_like(launch_seconds: float, tokens_per_second: float):
    """A fake device clock: a pass costs a fixed launch time plus its padded tokens at a steady rate, so small
    passes are dominated by the launch (a small model on a GPU)."""
    return lambda batch: launch_seconds + batch.padded_tokens / tokens_per_second


def timed_passes(scheduler: Scheduler, clock, count: int) -> list[tuple[Batch, float]]:
    passes = []
    for _ in range(count):
        batch = scheduler.next_batch()
        seconds = clock(batch)
        scheduler.complete(batch, np.array(values(batch), dtype=np.float32), seconds)
        passes.append((batch, seconds))
    return passes


def test_on_a_gpu_passes_grow_until_one_takes_the_target_time():
    """2 ms of launch per pass and 10 M tokens/s: 16,384-token passes take 3.6 ms; sized to 8 ms they hold about
    60,000 tokens, where the launch is a quarter of the pass instead of more than half."""
    scheduler = Scheduler(max_batch_tokens=16_384, forward_seconds=0.008, max_sized_tokens=8 * 16_384)
    scheduler.add(request(*([128] * 20_000)))
    passes = timed_passes(scheduler, gpu_like(0.002, 10_000_000), 30)
    assert passes[0][0].padded_tokens <= 16_384  # nothing measured yet: the token budget
    settled = [seconds for _, seconds in passes[-10:]]
    assert all(0.007 <= seconds <= 0.0085 for seconds in settled), settled
    assert all(batch.padded_tokens <= 8 * 16_384 for batch, _ in passes)


def test_passes_sized_by_time_stop_at_their_cap_and_never_shrink_below_the_budget():
    fast = Scheduler(max_batch_tokens=16_384, forward_seconds=0.008, max_sized_tokens=65_536)
    fast.add(request(*([128] * 20_000)))
    assert max(b.padded_tokens for b, _ in timed_passes(fast, gpu_like(0.0, 1e9), 20)) == 65_536
    slow = Scheduler(max_batch_tokens=16_384, forward_seconds=0.008, max_sized_tokens=65_536)
    slow.add(request(*([128] * 2_000)))
    passes = timed_passes(slow, gpu_like(0.0, 1e6), 10)  # 16 ms per 16,384 tokens: over the target already
    assert all(b.padded_tokens == 16_384 for b, _ in passes)


def test_with_passes_sized_by_time_a_lone_request_still_waits_at_most_one_pass():
    scheduler = Scheduler(max_batch_tokens=16_384, forward_seconds=0.008, max_sized_tokens=8 * 16_384)
    large = request(*([128] * 20_000))
    scheduler.add(large)
    clock = gpu_like(0.002, 10_000_000)
    timed_passes(scheduler, clock, 20)  # settled at about 8 ms a pass
    running = scheduler.next_batch()  # a pass the lone request arrives during
    lone = request(64, base=7)
    scheduler.add(lone)
    scheduler.complete(running, np.array(values(running), dtype=np.float32), clock(running))
    following = scheduler.next_batch()
    assert any(r is lone for r, _ in following.parts)
    assert clock(running) <= 0.0085  # and the pass it waited for took about the target


def test_on_a_cpu_passes_keep_the_token_budget_however_fast():
    scheduler = Scheduler(max_batch_tokens=2048)  # no forward_seconds: the engine on a CPU
    scheduler.add(request(*([128] * 2_000)))
    assert max(b.padded_tokens for b, _ in timed_passes(scheduler, gpu_like(0.0, 1e9), 20)) <= 2048
