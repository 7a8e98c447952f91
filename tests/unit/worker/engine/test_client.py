"""The Celery side's engine client against a real engine process with a fake model (fake_engine.py)."""

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

from shared.errors import ErrorType, RerankError
from worker.engine.client import DeadlineExceeded, EngineClient
from worker.model_source import ModelLoadError
from worker.text.tokenization import EncodedPairs

FAKE = [sys.executable, "-m", "tests.unit.worker.engine.fake_engine"]


def pairs(*first_tokens: int, length: int = 4) -> EncodedPairs:
    """Pairs of `length` tokens whose first token is the logit the fake model gives them."""
    ids = np.concatenate([[t] + [1] * (length - 1) for t in first_tokens]).astype(np.int32)
    return EncodedPairs(ids, None, np.full(len(first_tokens), length, dtype=np.int32))


@pytest.fixture(params=["one pass at a time", "overlapped"])
def engine(request):
    """The engine loop awaiting each pass at once (as on a CPU), or after queueing the next (as on CUDA)."""
    events = {"up": threading.Event(), "down": threading.Event()}
    overlap = ["--overlap"] if request.param == "overlapped" else []
    client = EngineClient(argv=FAKE + ["--pass-seconds", "0.05", *overlap], on_up=lambda info: events["up"].set(),
                          on_down=events["down"].set)  # fmt: skip
    client.events = events
    client.start(timeout=60)
    yield client
    client.close()


def test_requests_from_many_threads_get_their_own_logits_in_order(engine):
    results = {}

    def send(n: int) -> None:
        results[n] = engine.score(pairs(n, n + 1, n + 2)).result(10).tolist()

    threads = [threading.Thread(target=send, args=(10 * n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {10 * n: [10.0 * n, 10.0 * n + 1, 10.0 * n + 2] for n in range(1, 9)}


def test_an_empty_request_is_answered_without_the_engine(engine):
    assert engine.score(EncodedPairs(np.zeros(0, np.int32), None, np.zeros(0, np.int32))).result(1).tolist() == []


def test_a_request_past_its_deadline_fails_with_deadline_exceeded(engine):
    busy = engine.score(pairs(*range(1, 40)))  # a few passes of the fake model
    late = engine.score(pairs(7), deadline=time.time() + 0.01)
    with pytest.raises(DeadlineExceeded):
        late.result(10)
    assert busy.result(10).tolist() == [float(i) for i in range(1, 40)]


def test_a_failed_forward_pass_fails_its_request_and_the_engine_goes_on(engine):
    with pytest.raises(RerankError) as caught:
        engine.score(pairs(666)).result(10)
    assert caught.value.type is ErrorType.INTERNAL
    assert engine.score(pairs(5)).result(10).tolist() == [5.0]


def test_a_cancelled_request_stops_at_the_next_pass(engine):
    job = engine.score(pairs(*range(1, 321)), background=True)  # 20 passes of 16 pairs, 50 ms each
    time.sleep(0.2)
    assert job.cancel()
    assert engine.score(pairs(9)).result(10).tolist() == [9.0]
    time.sleep(1.5)  # the job's 20 passes would be over by now
    assert engine.stats()["batch_stats"]["pairs"] <= 160 + 1  # the job's other pairs never ran


def test_stats_give_the_engine_s_batch_statistics_and_metrics(engine):
    engine.score(pairs(1, 2)).result(10)
    stats = engine.stats()
    assert stats["batch_stats"]["pairs"] == 2
    assert "rerank_worker_device_idle_seconds" in {family["name"] for family in stats["metrics"]}


def test_a_killed_engine_fails_what_it_held_at_once_and_a_new_one_takes_over(engine):
    held = [engine.score(pairs(*range(1, 60))) for _ in range(3)]  # about 3 s of passes
    time.sleep(0.2)
    os.kill(engine.pid, signal.SIGKILL)
    for future in held:
        with pytest.raises(RerankError) as caught:
            future.result(5)
        assert caught.value.type is ErrorType.UNAVAILABLE and caught.value.retry_after
    assert engine.events["down"].wait(5)
    with pytest.raises(RerankError, match="starting"):
        engine.score(pairs(1))  # refused at once while the new engine loads
    assert engine.events["up"].wait(30)
    assert engine.score(pairs(9)).result(10).tolist() == [9.0]


def test_a_frame_that_makes_no_sense_stops_the_engine_and_a_new_one_takes_over(engine):
    """A RESULT frame too short for its header (struct.error): the client closes the socket and kills the engine,
    what it held fails at once, and a new engine serves, as after a crash (before: the worker stayed stuck)."""
    broken_pid = engine.pid
    held = engine.score(pairs(667))
    with pytest.raises(RerankError) as caught:
        held.result(10)
    assert caught.value.type is ErrorType.UNAVAILABLE
    assert engine.events["down"].wait(10), "the engine was neither killed nor restarted"
    assert engine.events["up"].wait(30)
    assert engine.pid != broken_pid
    with pytest.raises(ProcessLookupError):
        os.kill(broken_pid, 0)
    assert engine.score(pairs(9)).result(10).tolist() == [9.0]


def test_an_engine_that_cannot_load_its_model_says_why():
    client = EngineClient(argv=FAKE + ["--fatal", "model 'x' does not exist"])
    with pytest.raises(ModelLoadError, match="model 'x' does not exist"):
        client.start(timeout=60)


def test_closing_stops_the_engine_for_good(engine):
    pid = engine.pid
    engine.close()
    time.sleep(1.5)
    assert not engine.events["down"].is_set()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
