"""Batch-job chunks: score a chunk's requests at background priority and commit their result lines once.

A chunk task is acknowledged late: if its worker dies, the chunk returns to the queue after the
visibility timeout. Committing is one Lua script that records the chunk as done and adds its lines and
counters only the first time, so a chunk run twice is counted once. The run that commits chunk n
queues chunk n + RERANK_JOB_WINDOW, so a job keeps a bounded number of chunks queued and never fills a
worker's task slots ahead of interactive requests. Every queued or running chunk holds a lease that its
worker renews; worker/tasks/job_sweeper.py queues again any chunk whose lease lapsed or that the chain lost.
A chunk whose engine stopped mid-way is not committed: it is queued again, for a worker whose engine runs.
At most RERANK_JOB_CONCURRENCY chunks run at once in one worker (`chunk_slots`); more wait for a slot in
their task thread, chunks holding at most half the task threads in all (28 waiting beside 4 running of the
default 64), so batch jobs never hold the threads interactive requests need, and a chunk is one task however
long it waits. Only a chunk that finds the waiting room full too is queued again, due a moment later
(counted in `rerank_worker_job_chunk_requeues_total`, logged at DEBUG), and so is a waiting chunk when the
worker begins to stop, so that a shutdown waits only for the chunks running.
A cancelled job's chunks stop: a queued one is skipped (its payload was deleted by the cancel), a waiting one
leaves, a running one drops its pairs not yet scored (the engine never runs them) and commits nothing; the
job's status is looked at every CANCEL_POLL_SECONDS while a chunk waits or runs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

import redis
from celery import signals

from shared.celery_app import JOB_CHUNK_TASK, send_job_chunk
from shared.errors import ErrorType, RerankError
from shared.job_keys import chunk_key, done_key, job_key, job_keys, leases_key
from shared.job_schemas import ChunkEntry, result_line
from shared.schemas import RankResult, build_ranking_response
from shared.settings import get_settings
from worker.tasks.app import PendingScores, app, current_state, fleet_task, submit_request

log = logging.getLogger(__name__)

# KEYS: job, done, results, ids, leases, chunk. ARGV: chunk no, completed, failed, pairs, now, (index, line)...
# The job's keys get their TTL (the job's own `ttl` field, set by the API) again when it finishes. The lines'
# bytes count in the job's `staged_bytes`, against its caller's RERANK_JOB_MAX_STAGED_BYTES until it expires.
_COMMIT = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
local stored = 0
for i = 6, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  stored = stored + #ARGV[i + 1]
end
redis.call('HINCRBY', KEYS[1], 'staged_bytes', stored)
redis.call('HINCRBY', KEYS[1], 'completed_requests', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'failed_requests', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'completed_pairs', ARGV[4])
redis.call('HDEL', KEYS[5], ARGV[1])
local done = redis.call('HINCRBY', KEYS[1], 'chunks_done', 1)
local total = tonumber(redis.call('HGET', KEYS[1], 'chunks_total') or '-1')
local status = redis.call('HGET', KEYS[1], 'status')
if done == total and (status == 'queued' or status == 'running') then
  local completed = tonumber(redis.call('HGET', KEYS[1], 'completed_requests'))
  redis.call('HSET', KEYS[1], 'status', completed > 0 and 'succeeded' or 'failed', 'finished_at', ARGV[5])
  if completed == 0 then
    redis.call('HSET', KEYS[1], 'error', 'every request of the job failed', 'error_type', 'job_failed')
  end
  local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl') or '86400')
  for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ttl) end
end
redis.call('DEL', KEYS[6])
return 1
"""

# KEYS: job. ARGV: now. Marks a queued job running, once.
_START = """
if redis.call('HGET', KEYS[1], 'status') == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
end
return redis.call('HGET', KEYS[1], 'status')
"""

_client: redis.Redis | None = None
BUSY_RETRY_SECONDS = 1.0  # a chunk that found no free slot and no room to wait is due again this much later
CANCEL_POLL_SECONDS = 0.5  # how often a waiting or running chunk looks whether its job was cancelled


worker_stopping = threading.Event()  # set when Celery begins its shutdown: waiting chunks leave the worker


@signals.worker_shutting_down.connect(weak=False)
def _on_shutdown(**_) -> None:
    worker_stopping.set()


class ChunkCancelled(Exception):
    """The chunk's job was cancelled, or has gone, while the chunk waited or ran."""


class ChunkSlots:
    """This worker's budget of chunks running at once (RERANK_JOB_CONCURRENCY), and its room for chunks that wait
    for one in their task thread: chunks, running and waiting, hold at most half the task threads."""

    def __init__(self, running: int, task_threads: int) -> None:
        self._running = threading.BoundedSemaphore(running)
        self.waiting_room = max(0, task_threads // 2 - running)
        self._waiting = threading.BoundedSemaphore(self.waiting_room) if self.waiting_room else None

    def take(self, cancelled: Callable[[], bool]) -> bool:
        """Hold a slot, waiting for one if there is room to wait; False if there is not, or once the worker is
        stopping (nothing held: the chunk is queued again, for another worker). ChunkCancelled if `cancelled()`
        turns true while it waits."""
        if self._running.acquire(blocking=False):
            return True
        if worker_stopping.is_set() or self._waiting is None or not self._waiting.acquire(blocking=False):
            return False
        try:
            while not self._running.acquire(timeout=CANCEL_POLL_SECONDS):
                if worker_stopping.is_set():
                    return False
                if cancelled():
                    raise ChunkCancelled()
            return True
        finally:
            self._waiting.release()

    def release(self) -> None:
        self._running.release()


_slots: ChunkSlots | None = None


def chunk_slots() -> ChunkSlots:
    """This worker's chunk slots (RERANK_JOB_CONCURRENCY of RERANK_WORKER_CONCURRENCY task threads)."""
    global _slots
    if _slots is None:
        settings = get_settings()
        _slots = ChunkSlots(settings.job_concurrency, settings.worker_concurrency)
    return _slots


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(get_settings().redis_url, socket_connect_timeout=2, socket_timeout=10)
    return _client


def entry_line(entry: ChunkEntry, outcome: RankResult | RerankError) -> str:
    """The NDJSON line of one request: its rankings, or its error."""
    if isinstance(outcome, RerankError):
        return result_line(entry.index, entry.custom_id, error=outcome.to_dict())
    return result_line(entry.index, entry.custom_id, response=build_ranking_response(outcome, entry.limit).model_dump())


def score_entries(
    entries: list[ChunkEntry], cancelled: Callable[[], bool] = lambda: False
) -> list[RankResult | RerankError]:
    """Each request's scores, its pairs queued behind interactive work; a bad request fails alone.

    UNAVAILABLE (the engine stopped) is raised, not given as the request's outcome: the chunk runs again.
    ChunkCancelled if `cancelled()` (asked between requests while they are tokenized and sent, and every
    CANCEL_POLL_SECONDS while they are scored) turns true: the pairs not scored yet are dropped.
    """
    state = current_state()
    pending: list[PendingScores | RerankError] = []
    watch = _CancelWatch(cancelled, pending)
    for entry in entries:
        watch.check()
        try:
            pending.append(submit_request(state, entry.query, entry.passages, entry.truncate,
                                          instruction=entry.instruction, max_chunks=entry.max_chunks_per_passage,
                                          background=True))  # fmt: skip
        except RerankError as error:
            if error.type is ErrorType.UNAVAILABLE:
                raise
            pending.append(error)
    outcomes: list[RankResult | RerankError] = []
    for item in pending:
        if isinstance(item, RerankError):
            outcomes.append(item)
            continue
        try:
            logits, token_counts = watch.wait(item)
        except RerankError as error:
            if error.type is ErrorType.UNAVAILABLE:
                raise
            outcomes.append(error)
            continue
        except ChunkCancelled:
            raise
        except Exception:
            log.exception("a batch-job forward pass failed")
            outcomes.append(RerankError(ErrorType.INTERNAL, "the worker failed to score this request"))
            continue
        outcomes.append(RankResult(logits=logits.tolist(), token_counts=token_counts.tolist()))
    return outcomes


class _CancelWatch:
    """Asks `cancelled()` at most every CANCEL_POLL_SECONDS; once it is true, cancels every request sent and
    raises ChunkCancelled."""

    def __init__(self, cancelled: Callable[[], bool], sent: list) -> None:
        self._cancelled, self._sent = cancelled, sent
        self._asked = time.monotonic()

    def check(self) -> None:
        if time.monotonic() - self._asked < CANCEL_POLL_SECONDS:
            return
        self._asked = time.monotonic()
        if self._cancelled():
            for request in self._sent:
                if isinstance(request, PendingScores):
                    request.cancel()
            raise ChunkCancelled()

    def wait(self, scores: PendingScores) -> tuple:
        """One request's scores, looking for a cancel while they come."""
        while True:
            try:
                return scores(CANCEL_POLL_SECONDS)
            except TimeoutError:
                self.check()


def job_cancelled(client: redis.Redis, job_id: str) -> bool:
    """Whether the job was cancelled, or has gone (expired or deleted)."""
    return client.hget(job_key(job_id), "status") in (None, b"cancelled")


def commit(job_id: str, chunk_no: int, entries: list[ChunkEntry], outcomes: list) -> bool:
    """Record the chunk's lines and counters, once; True if this call was the one that counted."""
    completed = sum(1 for o in outcomes if isinstance(o, RankResult))
    pairs = sum(len(e.passages) for e, o in zip(entries, outcomes) if isinstance(o, RankResult))
    argv: list = [chunk_no, completed, len(outcomes) - completed, pairs, time.time()]
    for entry, outcome in zip(entries, outcomes):
        argv += [entry.index, entry_line(entry, outcome)]
    keys = job_keys(job_id) + [chunk_key(job_id, chunk_no)]
    return bool(_redis().eval(_COMMIT, len(keys), *keys, *argv))


class RunningChunks:
    """The chunks this process is scoring, whose leases its heartbeat renews."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[tuple[str, int], int] = {}

    def add(self, job_id: str, chunk: int) -> None:
        with self._lock:
            self._running[(job_id, chunk)] = self._running.get((job_id, chunk), 0) + 1

    def remove(self, job_id: str, chunk: int) -> None:
        with self._lock:
            left = self._running.pop((job_id, chunk), 1) - 1
            if left:
                self._running[(job_id, chunk)] = left

    def renew_leases(self, client: redis.Redis) -> None:
        with self._lock:
            running = list(self._running)
        now = time.time()
        with client.pipeline(transaction=False) as pipe:
            for job_id, chunk in running:
                pipe.hset(leases_key(job_id), chunk, now)
            pipe.execute()


running_chunks = RunningChunks()


def queue_chunk(client: redis.Redis, *, job_id: str, model: str, chunk: int, window: int,
                countdown: float | None = None) -> None:  # fmt: skip
    """Lease a chunk, then queue it (due `countdown` seconds from now if given)."""
    client.hset(leases_key(job_id), chunk, time.time())
    send_job_chunk(app, job_id=job_id, model=model, chunk=chunk, window=window, countdown=countdown)


@fleet_task(JOB_CHUNK_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def job_chunk(payload: dict) -> dict:
    """Score one chunk of a batch job; the run that commits it queues the job's next chunk."""
    job_id, chunk_no, window = payload["job_id"], int(payload["chunk"]), int(payload["window"])
    client = _redis()
    status = client.eval(_START, 1, job_key(job_id), time.time())
    if status is None or status == b"cancelled":
        return {"skipped": True}  # expired, deleted or cancelled: nothing to do, nothing to queue

    def cancelled() -> bool:
        return job_cancelled(client, job_id)

    running_chunks.add(job_id, chunk_no)  # its lease is renewed while it waits for a slot and while it runs
    try:
        if not chunk_slots().take(cancelled):  # this worker runs its budget of chunks, and its waiting room is full
            queue_chunk(client, job_id=job_id, model=payload["model"], chunk=chunk_no, window=window,
                        countdown=BUSY_RETRY_SECONDS)  # fmt: skip
            return {"chunk": chunk_no, "deferred": True}
        try:
            committed = _score_and_commit(client, job_id, chunk_no, cancelled)
        finally:
            chunk_slots().release()
    except ChunkCancelled:
        return {"chunk": chunk_no, "cancelled": True}
    except RerankError as error:  # UNAVAILABLE: this worker's engine stopped; another run scores the chunk
        log.warning("chunk %d of job %s not scored (%s); queued again", chunk_no, job_id, error.message)
        queue_chunk(client, job_id=job_id, model=payload["model"], chunk=chunk_no, window=window)
        return {"chunk": chunk_no, "committed": False, "queued_again": True}
    finally:
        running_chunks.remove(job_id, chunk_no)
    total = int(client.hget(job_key(job_id), "chunks_total") or 0)
    if committed and chunk_no + window < total:
        queue_chunk(client, job_id=job_id, model=payload["model"], chunk=chunk_no + window, window=window)
    return {"chunk": chunk_no, "committed": committed}


def _score_and_commit(client: redis.Redis, job_id: str, chunk_no: int, cancelled: Callable[[], bool]) -> bool:
    """Score the chunk and commit its lines; False if another run committed it or the job's cancel deleted it."""
    raw = client.get(chunk_key(job_id, chunk_no))
    if raw is None or client.sismember(done_key(job_id), chunk_no):
        return False
    client.hset(leases_key(job_id), chunk_no, time.time())
    entries = [ChunkEntry.model_validate(e) for e in json.loads(raw)]
    return commit(job_id, chunk_no, entries, score_entries(entries, cancelled))
