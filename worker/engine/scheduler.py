"""The micro-batcher: pairs of every request a worker holds share forward passes.

It knows nothing of Celery, sockets or torch, and works on each request's pairs as arrays (lengths and
flat token ids, `EncodedPairs`), never on one Python object per pair. The engine's loop adds requests,
asks for the next batch whenever the model is free, and hands back each batch's logits:

- pairs are sorted by length, so a batch pads little;
- a batch is bounded by a token budget, counted as padded tokens (longest pair x pairs);
- the batch always holds its anchor, the oldest pending pair, so no request starves behind shorter
  newcomers; but after a batch that left the oldest request with pairs still to score (a large request, e.g.
  passages of many windows), the anchor is the first pair of the oldest request that has had none scored yet:
  a lone request waits at most one pass behind a large one, which still gets every other pass;
- a batch is formed as soon as the model is free and a pair is waiting: no timer waits for company;
- background pairs (batch jobs) run only when no interactive pair waits, in batches sized to take about
  `background_forward_seconds` at the throughput measured so far, never smaller than an interactive batch
  (`max_batch_tokens`: a job alone fills every pass at least as well as interactive traffic, and an
  interactive request waits at most one such pass), growing up to `background_batch_tokens` where the
  measured throughput allows;
- with `forward_seconds` (CUDA), interactive batches grow from `max_batch_tokens` until one takes about
  that long at the throughput measured so far, to at most `max_sized_tokens`: a small model's pass is long
  enough that the host's launch work is not what sets the pace, and a request still waits at most one
  pass of about that time;
- a request whose deadline passed before all its pairs were scored is dropped: its pending pairs never run;
  so is a request cancelled by its sender (a batch job cancelled while its chunk was being scored).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from worker.text.tokenization import EncodedPairs


@dataclass
class BatchStats:
    """Counters a worker reports in its heartbeat (and as metrics)."""

    batches: int = 0
    pairs: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    forward_seconds: float = 0.0  # time spent in forward passes: busy / wall time is the model's utilisation
    forward_cpu_seconds: float = 0.0  # CPU time of the engine's thread in them (its other torch threads not counted)
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


@dataclass(eq=False)
class Request:
    """One request's pairs on their way through the batcher."""

    request_id: int
    pairs: EncodedPairs
    background: bool = False
    deadline: float | None = None  # unix time after which nobody waits for the scores
    logits: np.ndarray = field(init=False)
    pending: np.ndarray = field(init=False)  # positions of the pairs not yet in a batch, in arrival order
    unscored: int = field(init=False)

    def __post_init__(self) -> None:
        self.logits = np.zeros(len(self.pairs), dtype=np.float32)
        self.pending = np.arange(len(self.pairs))
        self.unscored = len(self.pairs)

    @property
    def started(self) -> bool:
        """Whether any of its pairs is in a batch already."""
        return len(self.pending) < len(self.pairs)


@dataclass(frozen=True, slots=True)
class Batch:
    """Pairs of one forward pass: their tokens end to end, and which request and position each came from."""

    pairs: EncodedPairs
    parts: list[tuple[Request, np.ndarray]]  # (request, positions) in the order of the rows of `pairs`

    @property
    def padded_tokens(self) -> int:
        return int(self.pairs.lengths.max()) * len(self.pairs)


class Scheduler:
    """Packs pairs from concurrent requests into token-budget batches, oldest pair first."""

    def __init__(
        self,
        *,
        max_batch_tokens: int,
        background_batch_tokens: int | None = None,
        background_forward_seconds: float | None = None,
        forward_seconds: float | None = None,
        max_sized_tokens: int | None = None,
        window_batches: int = 8,
    ) -> None:
        self._budget = {False: max_batch_tokens, True: background_batch_tokens or max_batch_tokens}
        self._background_seconds = background_forward_seconds
        self._forward_seconds = forward_seconds or None  # interactive passes sized by time (None: by tokens)
        self._max_sized_tokens = max(max_sized_tokens or max_batch_tokens, max_batch_tokens)
        self._tokens_per_second: float | None = None  # moving average of padded tokens per second
        self._window_batches = window_batches  # how far past the oldest pair we sort, in batches
        self._queues: dict[bool, deque[Request]] = {False: deque(), True: deque()}  # by `background`
        self._oldest_goes_on = {False: False, True: False}  # the last batch left the oldest request pairs to score
        self.stats = BatchStats()

    def add(self, request: Request) -> None:
        """Queue a request's pairs behind those already pending of its class (interactive or background)."""
        if len(request.pairs):
            self._queues[request.background].append(request)

    def pending(self) -> bool:
        return bool(self._queues[False] or self._queues[True])

    def drop_expired(self, now: float | None = None) -> list[Request]:
        """Remove and return the pending requests whose deadline has passed (a few dozen to look at, not pairs)."""
        now = time.time() if now is None else now
        expired = []
        for background, queue in self._queues.items():
            if any(r.deadline is not None and r.deadline < now for r in queue):
                expired += [r for r in queue if r.deadline is not None and r.deadline < now]
                self._queues[background] = deque(r for r in queue if r.deadline is None or r.deadline >= now)
        return expired

    def cancel(self, request_ids: list[int]) -> None:
        """Drop the pending pairs of these requests (no result is sent for them); unknown ids are ignored."""
        ids = set(request_ids)
        for background, queue in self._queues.items():
            if any(r.request_id in ids for r in queue):
                self._queues[background] = deque(r for r in queue if r.request_id not in ids)

    def next_batch(self) -> Batch | None:
        """Take the next batch off the pending pairs: interactive ones first, the anchor's first pair always in it."""
        background = not self._queues[False]
        queue = self._queues[background]
        if not queue:
            return None
        budget = self._budget_now(background)
        oldest = anchor = queue[0]
        if self._oldest_goes_on[background]:  # a newcomer's turn, if one waits
            anchor = next((request for request in queue if not request.started), oldest)
        window = self._window(queue, anchor, budget * self._window_batches)
        lengths = np.concatenate([request.pairs.lengths[positions] for request, positions in window])
        order = np.argsort(lengths, kind="stable")  # by length, then the window's order (the anchor's pairs first)
        chosen = np.sort(order[_run_holding(lengths[order], budget, int(np.flatnonzero(order == 0)[0]))])
        batch = self._take(queue, window, chosen)
        self._oldest_goes_on[background] = anchor is oldest and len(oldest.pending) > 0
        return batch

    def _budget_now(self, background: bool) -> int:
        """The padded-token budget of the next batch: sized by time where asked, once a pass has been timed."""
        budget, rate = self._budget[background], self._tokens_per_second
        if not rate:
            return budget
        if background and self._background_seconds:  # a job's pass never holds the model long, and is never
            # smaller than an interactive one: a job alone fills every pass at least as well as interactive traffic
            return int(max(min(budget, rate * self._background_seconds), self._budget_now(False)))
        if not background and self._forward_seconds:  # grows only, to the cap: passes long enough to keep a GPU busy
            return int(min(self._max_sized_tokens, max(budget, rate * self._forward_seconds)))
        return budget

    def _window(self, queue: deque[Request], anchor: Request, limit: int) -> list[tuple[Request, np.ndarray]]:
        """The anchor's pending pairs, then the oldest others', up to `limit` tokens (at least one pair)."""
        window, tokens = [], 0
        for request in (anchor, *(r for r in queue if r is not anchor)):
            lengths = request.pairs.lengths[request.pending]
            fit = int(np.searchsorted(np.cumsum(lengths), limit - tokens, side="right"))
            fit = max(fit, 1) if not window else fit
            if fit:
                window.append((request, request.pending[:fit]))
                tokens += int(lengths[:fit].sum())
            if fit < len(request.pending):
                break
        return window

    def _take(self, queue: deque[Request], window: list[tuple[Request, np.ndarray]], chosen: np.ndarray) -> Batch:
        """Remove the `chosen` pairs (indices into the window) from their requests' pending pairs."""
        parts, first = [], 0
        for request, positions in window:
            mine = chosen[(chosen >= first) & (chosen < first + len(positions))] - first
            first += len(positions)
            if len(mine):
                taken = positions[mine]
                parts.append((request, taken))
                request.pending = np.setdiff1d(request.pending, taken, assume_unique=True)
        for request, _ in parts:
            if not len(request.pending):
                queue.remove(request)
        return Batch(EncodedPairs.concat([request.pairs.take(taken) for request, taken in parts]), parts)

    def complete(self, batch: Batch, logits: np.ndarray, seconds: float, cpu_seconds: float = 0.0) -> list[Request]:
        """Record a batch's logits (in the order of its rows) and how long its pass took; the requests it completed."""
        self._count(batch, seconds)
        self.stats.forward_cpu_seconds += cpu_seconds
        done, row = [], 0
        for request, positions in batch.parts:
            request.logits[positions] = logits[row : row + len(positions)]
            row += len(positions)
            request.unscored -= len(positions)
            if request.unscored == 0:
                done.append(request)
        return done

    def fail(self, batch: Batch) -> list[Request]:
        """A forward pass raised: the requests of its pairs, whose other pending pairs are dropped too."""
        failed = list({id(request): request for request, _ in batch.parts}.values())
        for background, queue in self._queues.items():
            if any(r in failed for r in queue):
                self._queues[background] = deque(r for r in queue if r not in failed)
        return failed

    def _count(self, batch: Batch, seconds: float) -> None:
        pairs, padded = len(batch.pairs), batch.padded_tokens
        if seconds > 0:
            rate, previous = padded / seconds, self._tokens_per_second
            self._tokens_per_second = rate if previous is None else 0.8 * previous + 0.2 * rate
        stats = self.stats
        stats.batches += 1
        stats.pairs += pairs
        stats.real_tokens += int(batch.pairs.lengths.sum())
        stats.padded_tokens += padded
        stats.forward_seconds += seconds
        for histogram, value in ((stats.batch_pairs_histogram, pairs), (stats.batch_tokens_histogram, padded)):
            histogram[_bucket(value)] = histogram.get(_bucket(value), 0) + 1
        requests = len({id(request) for request, _ in batch.parts})
        stats.shared_batches += requests > 1
        stats.max_requests_in_batch = max(stats.max_requests_in_batch, requests)


def _run_holding(lengths: np.ndarray, budget: int, oldest: int) -> slice:
    """Cut length-sorted pairs greedily into runs within `budget` padded tokens (longest x count, the last pair
    being the longest); the run that holds `oldest`. A pair longer than the budget makes a run of its own."""
    start = 0
    while True:
        padded = lengths[start:] * np.arange(1, len(lengths) - start + 1)  # a run's padded size, by its end
        over = np.flatnonzero(padded > budget)
        end = start + max(int(over[0]) if len(over) else len(padded), 1)
        if oldest < end:
            return slice(start, end)
        start = end
