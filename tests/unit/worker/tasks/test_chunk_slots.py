"""A worker's chunk slots: chunks beyond RERANK_JOB_CONCURRENCY wait in their thread (never over half the task
threads in all), and leave when their job is cancelled or the worker stops."""

import threading
import time

import pytest

from worker.tasks import job_chunks
from worker.tasks.job_chunks import ChunkCancelled, ChunkSlots


def test_chunks_hold_at_most_half_the_task_threads():
    assert ChunkSlots(4, 64).waiting_room == 28
    assert ChunkSlots(1, 2).waiting_room == 0  # no room: a chunk that finds the slot taken is queued again
    slots = ChunkSlots(1, 2)
    assert slots.take(lambda: False) and not slots.take(lambda: False)


def test_a_waiting_chunk_gets_the_slot_once_it_is_released():
    slots = ChunkSlots(1, 8)
    assert slots.take(lambda: False)
    threading.Timer(0.2, slots.release).start()
    started = time.monotonic()
    assert slots.take(lambda: False)
    assert 0.15 < time.monotonic() - started < 2


def test_a_waiting_chunk_leaves_when_its_job_is_cancelled_or_the_worker_stops(monkeypatch):
    slots = ChunkSlots(1, 8)
    assert slots.take(lambda: False)
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    with pytest.raises(ChunkCancelled):
        slots.take(cancel.is_set)
    stopping = threading.Event()
    monkeypatch.setattr(job_chunks, "worker_stopping", stopping)
    threading.Timer(0.2, stopping.set).start()
    assert slots.take(lambda: False) is False  # queued again, for another worker
    assert slots.take(lambda: False) is False  # and a chunk arriving now does not wait
