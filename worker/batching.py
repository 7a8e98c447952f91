"""The micro-batcher: pairs from every in-flight request of a worker share forward passes.

It knows nothing of Celery, HTTP or torch. Request threads call `submit` with their encoded pairs and
wait on the returned future; one model thread packs pending pairs into batches and scores them:

- pairs are sorted by length, so a batch pads little;
- a batch is bounded by a token budget, counted as padded tokens (longest pair x pairs);
- the batch always holds the oldest pending pair, so no request starves behind shorter newcomers;
- the model thread runs as soon as it is free and a pair is waiting: no timer waits for company;
- background pairs (batch jobs) run only when no interactive pair waits, in batches sized to take about
  `background_forward_seconds` at the throughput measured so far (at most `background_batch_tokens`),
  so a job's forward pass never holds the model long on a slow CPU or a fast GPU alike.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import count
from typing import Callable, Protocol, Sequence

log = logging.getLogger(__name__)


class Sized(Protocol):
    @property
    def length(self) -> int: ...


ScoreFn = Callable[[Sequence[Sized]], Sequence[float]]


@dataclass
class BatchStats:
    """Counters a worker reports in its heartbeat (and, later, as metrics)."""

    batches: int = 0
    pairs: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    forward_seconds: float = 0.0  # time spent in forward passes: busy / wall time is the model's utilisation
    shared_batches: int = 0  # batches holding pairs of more than one request
    max_requests_in_batch: int = 0
    # batches by pairs and by padded tokens, in power-of-two buckets keyed by their upper bound
    batch_pairs_histogram: dict[str, int] = field(default_factory=dict)
    batch_tokens_histogram: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int | float | dict[str, int]]:
        return {name: dict(value) if isinstance(value, dict) else value for name, value in self.__dict__.items()}


def _bucket(value: int) -> str:
    """The power-of-two bucket of a histogram that holds `value` (1, 2, 4, ...: value <= bucket)."""
    return str(1 << max(0, value - 1).bit_length())


class DeadlineExceeded(Exception):
    """A request's deadline passed before its pairs were scored: they were dropped unscored."""


@dataclass
class _Request:
    pairs: Sequence[Sized]
    future: Future
    scores: list[float | None] = field(default_factory=list)
    remaining: int = 0
    deadline: float | None = None  # unix time after which nobody waits for the scores


@dataclass(slots=True)
class _PendingPair:
    seq: int  # arrival order, to find the oldest
    request: _Request
    position: int  # index of the pair within its request

    @property
    def length(self) -> int:
        return self.request.pairs[self.position].length


class MicroBatcher:
    """Packs pairs from concurrent requests into token-budget batches scored by one model thread."""

    def __init__(
        self,
        score: ScoreFn,
        *,
        max_batch_tokens: int,
        background_batch_tokens: int | None = None,
        background_forward_seconds: float | None = None,
        window_batches: int = 8,
    ) -> None:
        self._score = score
        self._budget = {False: max_batch_tokens, True: background_batch_tokens or max_batch_tokens}
        self._background_seconds = background_forward_seconds
        self._tokens_per_second: float | None = None  # moving average of padded tokens per second
        self._window_batches = window_batches  # how far past the oldest pair we sort, in batches
        self._queues: dict[bool, deque[_PendingPair]] = {False: deque(), True: deque()}  # by `background`
        self._with_deadline: dict[int, _Request] = {}  # submitted requests that have a deadline, by id
        self._cond = threading.Condition()
        self._seq = count()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.stats = BatchStats()

    def start(self, warmup: Callable[[], object] | None = None) -> "MicroBatcher":
        """Start the model thread; `warmup`, if given, runs first on it, and start returns once it has.

        The model's first pass belongs on the thread that runs all the others: torch gives every thread
        that runs parallel work its own OpenMP team, and a one-pair pass on another thread than the first
        pass's took 1.5x as long on a 2-core CPU (ops/BENCHMARKS.md, "Engine notes").
        """
        warmed: Future = Future()

        def run() -> None:
            try:
                if warmup is not None:
                    warmup()
            except BaseException as exc:
                warmed.set_exception(exc)
                return
            warmed.set_result(None)
            self._run()

        self._thread = threading.Thread(target=run, name="micro-batcher", daemon=True)
        self._thread.start()
        warmed.result()
        return self

    def close(self) -> None:
        """Stop after the pairs already submitted; later submits fail."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def submit(self, pairs: Sequence[Sized], *, background: bool = False, deadline: float | None = None) -> Future:
        """Queue one request's pairs; the future gives their scores in the same order.

        Background pairs wait while any interactive pair is pending. Pairs still pending at `deadline`
        (unix time) are dropped before a batch is formed, and the future fails with DeadlineExceeded.
        """
        request = _Request(
            pairs=pairs, future=Future(), scores=[None] * len(pairs), remaining=len(pairs), deadline=deadline
        )
        if not pairs:
            request.future.set_result([])
            return request.future
        with self._cond:
            if self._closed:
                raise RuntimeError("micro-batcher is closed")
            self._queues[background].extend(_PendingPair(next(self._seq), request, i) for i in range(len(pairs)))
            if deadline is not None:
                self._with_deadline[id(request)] = request
            self._cond.notify()
        return request.future

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending() and not self._closed:
                    self._cond.wait()
                self._drop_expired()
                if not self._pending():
                    if self._closed:
                        return
                    continue
                batch = self._take_batch()
            self._score_batch(batch)

    def _pending(self) -> bool:
        return bool(self._queues[False] or self._queues[True])

    def _drop_expired(self) -> None:
        """Fail the requests past their deadline and remove their pending pairs (caller holds the lock).

        It looks at requests (dozens), not at their pending pairs (thousands), unless one has expired.
        """
        now = time.time()
        expired = False
        for key, request in list(self._with_deadline.items()):
            if request.future.done():
                del self._with_deadline[key]
            elif request.deadline < now:
                request.future.set_exception(DeadlineExceeded())
                del self._with_deadline[key]
                expired = True
        if expired:
            for background, queue in self._queues.items():
                self._queues[background] = deque(p for p in queue if not p.request.future.done())

    def _take_batch(self) -> list[_PendingPair]:
        """Remove and return the next batch from the pending pairs (caller holds the lock)."""
        background = not self._queues[False]
        queue, budget = self._queues[background], self._budget[background]
        if background and self._background_seconds and self._tokens_per_second:
            budget = int(min(budget, max(64, self._tokens_per_second * self._background_seconds)))
        window: list[_PendingPair] = []  # the oldest pairs, taken off the front of the queue
        window_tokens = 0
        while queue and (not window or window_tokens + queue[0].length <= budget * self._window_batches):
            window.append(queue.popleft())
            window_tokens += window[-1].length
        oldest = window[0]
        by_length = sorted(window, key=lambda p: (p.length, p.seq))
        batch: list[_PendingPair] = []
        for pending in by_length:
            # pairs are sorted by length, so the newest pair sets the padded width
            if batch and pending.length * (len(batch) + 1) > budget:
                if any(p is oldest for p in batch):
                    break
                batch = []
            batch.append(pending)
        taken = {id(p) for p in batch}
        queue.extendleft(reversed([p for p in window if id(p) not in taken]))  # the rest, back in arrival order
        return batch

    def _score_batch(self, batch: list[_PendingPair]) -> None:
        started = time.perf_counter()
        try:
            scores = self._score([p.request.pairs[p.position] for p in batch])
        except Exception as exc:  # a failed pass fails the requests in it, not the worker
            log.exception("forward pass of %d pairs failed", len(batch))
            for pending in batch:
                if not pending.request.future.done():
                    pending.request.future.set_exception(exc)
            return
        seconds = time.perf_counter() - started
        self._count(batch)
        self.stats.forward_seconds += seconds
        self._measure(max(p.length for p in batch) * len(batch), seconds)
        for pending, score in zip(batch, scores):
            request = pending.request
            request.scores[pending.position] = float(score)
            request.remaining -= 1
            if request.remaining == 0 and not request.future.done():
                request.future.set_result(request.scores)

    def _measure(self, padded_tokens: int, seconds: float) -> None:
        if seconds <= 0:
            return
        rate = padded_tokens / seconds
        previous = self._tokens_per_second
        self._tokens_per_second = rate if previous is None else 0.8 * previous + 0.2 * rate

    def _count(self, batch: list[_PendingPair]) -> None:
        requests = len({id(p.request) for p in batch})
        padded = max(p.length for p in batch) * len(batch)
        stats = self.stats
        stats.batches += 1
        stats.pairs += len(batch)
        stats.real_tokens += sum(p.length for p in batch)
        stats.padded_tokens += padded
        for histogram, value in ((stats.batch_pairs_histogram, len(batch)), (stats.batch_tokens_histogram, padded)):
            histogram[_bucket(value)] = histogram.get(_bucket(value), 0) + 1
        stats.shared_batches += requests > 1
        stats.max_requests_in_batch = max(stats.max_requests_in_batch, requests)
