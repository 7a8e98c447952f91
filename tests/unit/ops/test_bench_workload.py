"""The benchmark's workload generator and statistics (ops/bench/workload.py); the benchmark itself is not a test."""

from ops.bench.workload import (
    WORKLOADS,
    fixed_size_batches,
    histogram_delta,
    latency_summary,
    make_requests,
    padded_tokens,
    percentile,
    token_budget_batches,
)

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon"]


def test_requests_follow_the_spec_and_repeat_for_a_seed():
    spec = WORKLOADS["mixed"]
    requests = make_requests(spec, WORDS, count=5, seed=3)
    assert len(requests) == 5
    for request in requests:
        assert len(request.query.split()) == spec.query_words
        assert len(request.passages) == 24
        assert all(10 <= len(p.split()) <= 250 for p in request.passages)
    assert make_requests(spec, WORDS, count=5, seed=3) == requests
    assert make_requests(spec, WORDS, count=5, seed=4) != requests


def test_the_held_out_workload_has_long_passages_100_a_request():
    spec = WORKLOADS["long"]
    assert (spec.passages, spec.min_words, spec.max_words) == (100, 20, 400)


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 51.0  # round(49.5) = 50 -> the 51st value
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert latency_summary([0.010, 0.020, 0.030]) == {"p50_ms": 20.0, "p99_ms": 30.0}


def test_token_budget_batches_sort_by_length_and_count_padding():
    lengths = [50, 10, 40, 12, 11]
    batches = token_budget_batches(lengths, budget=60)
    assert batches == [[1, 4, 3], [2], [0]]  # 3 x 12 = 36 fits; 4 x 40 would not
    assert all(max(lengths[i] for i in b) * len(b) <= 60 for b in batches)
    assert padded_tokens(batches, lengths) == 36 + 40 + 50
    assert token_budget_batches([100], budget=60) == [[0]]  # longer than the budget: alone


def test_fixed_size_batches_keep_the_request_order():
    assert fixed_size_batches(5, 2) == [[0, 1], [2, 3], [4]]
    assert padded_tokens(fixed_size_batches(3, 32), [5, 9, 2]) == 27


def test_histogram_delta_keeps_what_changed_in_numeric_order():
    before = {"2": 1, "16": 4}
    after = {"2": 1, "16": 6, "4": 3, "1024": 1}
    assert histogram_delta(after, before) == {"4": 3, "16": 2, "1024": 1}
