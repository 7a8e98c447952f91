"""What a worker announces while its engine is busy in a long forward pass (worker/__main__.py: Worker.describe)."""

import sys
import time

import numpy as np

from shared.settings import Settings
from worker.__main__ import Worker
from worker.engine.client import EngineClient
from worker.text.tokenization import EncodedPairs

FAKE = [sys.executable, "-m", "tests.unit.worker.engine.fake_engine"]


def test_a_long_pass_does_not_hold_up_the_heartbeat():
    """With 0.5 s beats a registration lapses after 1.5 s: describing the worker must not wait for a 3 s pass."""
    worker = Worker(Settings(model="unused", heartbeat_interval=0.5))
    worker.engine = EngineClient(argv=FAKE + ["--pass-seconds", "3"])
    worker.engine.start(timeout=60)
    try:
        worker.engine_info = {"device": "cpu", "max_seq_len": 512}
        first = worker.describe()  # the engine is idle: it answers at once
        assert first["batch_stats"]["batches"] == 0
        busy = worker.engine.score(EncodedPairs(np.array([5, 1], np.int32), None, np.array([2], np.int32)))
        time.sleep(0.2)  # the pass has begun
        started = time.monotonic()
        during = worker.describe()
        assert time.monotonic() - started < 0.5
        assert during["batch_stats"] == first["batch_stats"]  # the last statistics, announced on time
        assert busy.result(10).tolist() == [5.0]
        assert worker.describe()["batch_stats"]["batches"] == 1
    finally:
        worker.engine.close()
