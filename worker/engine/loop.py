"""The engine's loop: frames in, batches through the model, results out, on one thread.

It knows the model only as `launch`: a function that starts a forward pass over a batch's flat token arrays
and returns a function that gives its logits and the seconds the device spent on the pass (None: the pass
ran on this thread, and this thread's clock times it). With `overlap` (CUDA, where `launch` queues a pass
and nothing in it waits for the device: worker/model/masks.py), the next batch is formed and queued before
the last one's logits are awaited, so the device does not idle while this thread reads frames, forms
batches and sends results; a pass's time is then the device's (CUDA events), not the wait for it, so
`forward_seconds` and the busy ratio do not count a pass queued behind another. It knows no torch.
"""

from __future__ import annotations

import logging
import selectors
import socket
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from worker.engine import protocol
from worker.engine.protocol import Kind, ScoreResult, Status
from worker.engine.scheduler import Batch, Request, Scheduler
from worker.metrics import EngineMetrics
from worker.text.tokenization import EncodedPairs

log = logging.getLogger("worker.engine")

RECEIVE_BYTES = 1 << 20


class Engine:
    """The loop: frames in, batches through the model, results out."""

    def __init__(
        self,
        connection: socket.socket,
        launch: Callable[[EncodedPairs], Callable[[], tuple[np.ndarray, float | None]]],
        scheduler: Scheduler,
        metrics: EngineMetrics,
        *,
        overlap: bool = False,
    ) -> None:
        self._connection = connection
        self._launch = launch
        self._overlap = overlap
        self._metrics = metrics
        self._scheduler = scheduler
        self._reader = protocol.FrameReader()
        self._selector = selectors.DefaultSelector()
        self._selector.register(connection, selectors.EVENT_READ)
        self._busy_since_stats = 0.0
        self._stats_at = time.monotonic()

    def run(self) -> None:
        """Serve until the Celery process closes its end of the socket."""
        in_flight: _Pass | None = None
        while self._receive(block=not self._scheduler.pending() and in_flight is None):
            for request in self._scheduler.drop_expired():
                self._send(protocol.encode_result(ScoreResult(request.request_id, Status.EXPIRED)))
            batch = self._scheduler.next_batch()
            launched = self._start(batch) if batch is not None else None
            if in_flight is not None:
                self._finish(in_flight)
            in_flight = launched
            if in_flight is not None and not self._overlap:
                self._finish(in_flight)
                in_flight = None

    def _start(self, batch: Batch) -> "_Pass | None":
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            return _Pass(batch, self._launch(batch.pairs), started, cpu_started)
        except Exception as exc:
            self._failed(batch, exc)
            return None

    def _finish(self, done: "_Pass") -> None:
        try:
            logits, device_seconds = done.logits()
        except Exception as exc:  # a failed pass fails the requests in it, not the engine
            self._failed(done.batch, exc)
            return
        seconds, cpu_seconds = time.perf_counter() - done.started, time.thread_time() - done.cpu_started
        if device_seconds is not None:
            seconds = device_seconds
        self._busy_since_stats += seconds
        self._metrics.record_batch(done.batch.pairs.lengths, seconds)
        for request in self._scheduler.complete(done.batch, logits, seconds, cpu_seconds):
            self._send(protocol.encode_result(ScoreResult(request.request_id, Status.OK, request.logits)))

    def _failed(self, batch: Batch, exc: Exception) -> None:
        log.error("forward pass of %d pairs failed", len(batch.pairs), exc_info=exc)
        self._metrics.record_forward_failure(type(exc).__name__)
        message = f"the forward pass failed ({type(exc).__name__})"
        for request in self._scheduler.fail(batch):
            self._send(protocol.encode_result(ScoreResult(request.request_id, Status.FAILED, message=message)))

    def _receive(self, *, block: bool) -> bool:
        """Take in every frame that has arrived, waiting for one if `block`; False once the peer has gone."""
        waited = time.perf_counter()
        ready = self._selector.select(None if block else 0)
        if block:
            self._metrics.device_idle_seconds.inc(time.perf_counter() - waited)
        while ready:
            try:
                data = self._connection.recv(RECEIVE_BYTES, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            if not data:
                return False
            for kind, payload in self._reader.feed(data):
                self._handle(kind, payload)
        return True

    def _handle(self, kind: Kind, payload: memoryview) -> None:
        if kind is Kind.SCORE:
            score = protocol.decode_score(payload)
            if not len(score.pairs):
                self._send(protocol.encode_result(ScoreResult(score.request_id, Status.OK, np.zeros(0, np.float32))))
                return
            self._scheduler.add(Request(score.request_id, score.pairs, score.background, score.deadline))
        elif kind is Kind.CANCEL:
            self._scheduler.cancel(protocol.decode_cancel(payload))
        elif kind is Kind.STATS:
            self._send(protocol.encode_json(Kind.STATS, self.stats()))

    def stats(self) -> dict:
        """Batch statistics and metric families, and the device's busy fraction since the last call."""
        now = time.monotonic()
        self._metrics.device_busy_ratio.set(min(1.0, self._busy_since_stats / max(now - self._stats_at, 1e-9)))
        self._busy_since_stats, self._stats_at = 0.0, now
        return {"batch_stats": self._scheduler.stats.as_dict(), "metrics": self._metrics.snapshot()}

    def _send(self, frame: bytes) -> None:
        self._connection.sendall(frame)


@dataclass(frozen=True, slots=True)
class _Pass:
    """A forward pass started: its batch, how to get its logits, and when it started (wall and thread CPU)."""

    batch: Batch
    logits: Callable[[], tuple[np.ndarray, float | None]]
    started: float
    cpu_started: float
