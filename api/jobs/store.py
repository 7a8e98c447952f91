"""Batch-job state in Redis, as the API reads and writes it (key scheme: shared/job_keys.py)."""

from __future__ import annotations

import json
import time
from typing import AsyncIterator

from redis.asyncio import Redis

from shared.job_keys import (
    JOBS_INDEX,
    caller_jobs_key,
    chunk_key,
    idempotency_key,
    ids_key,
    job_key,
    job_keys,
    leases_key,
    results_key,
)
from shared.job_schemas import FINISHED, Job, job_from_hash, result_line

_RESULT_PAGE = 500

# A job's chunks 0 .. count - 1 deleted, their bytes taken off its `staged_bytes`: what else the job stores
# (error lines, custom ids, results) still counts against its caller until it expires.
_DROP_CHUNKS_FUNCTION = """
local function drop_chunks(job, count, prefix)
  local freed = 0
  for n = 0, count - 1 do
    freed = freed + redis.call('STRLEN', prefix .. n)
    redis.call('DEL', prefix .. n)
  end
  local left = tonumber(redis.call('HGET', job, 'staged_bytes') or '0') - freed
  redis.call('HSET', job, 'staged_bytes', math.max(left, 0))
end
"""

# KEYS: job. ARGV: the number of chunks, the prefix of its chunk keys.
_DROP_CHUNKS = _DROP_CHUNKS_FUNCTION + "drop_chunks(KEYS[1], tonumber(ARGV[1]), ARGV[2])"

# KEYS: job. ARGV: now, the prefix of its chunk keys. Cancels a job that has not finished, deleting the
# requests it staged for the workers (a chunk taken by a worker then finds none and stops); returns its
# status afterwards.
_CANCEL = _DROP_CHUNKS_FUNCTION + """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1])
  drop_chunks(KEYS[1], tonumber(redis.call('HGET', KEYS[1], 'chunks_total') or '0'), ARGV[2])
  return 'cancelled'
end
return status
"""


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


class JobStore:
    def __init__(self, redis: Redis, ttl: int) -> None:
        self._redis = redis
        self._ttl = ttl

    async def claim_idempotency_key(self, caller: str, key: str, job_id: str) -> str | None:
        """Bind the caller's `key` to `job_id`; if it was bound already, the job id it names."""
        if await self._redis.set(idempotency_key(caller, key), job_id, nx=True, ex=self._ttl):
            return None
        return await self.idempotency_job(caller, key)

    async def idempotency_job(self, caller: str, key: str) -> str | None:
        """The job id the caller's `key` is bound to, if any."""
        existing = await self._redis.get(idempotency_key(caller, key))
        return _text(existing) if existing else None

    async def release_idempotency_key(self, caller: str, key: str) -> None:
        await self._redis.delete(idempotency_key(caller, key))

    async def create(self, job_id: str, model: str, caller: str) -> None:
        now = time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(job_key(job_id), mapping={"model": model, "owner": caller, "status": "queued", "created_at": now,
                                                "ttl": self._ttl, "staged_bytes": 0})  # fmt: skip
            pipe.expire(job_key(job_id), self._ttl)
            pipe.zadd(caller_jobs_key(caller), {job_id: now})  # jobs gone from Redis leave it in caller_usage
            pipe.expire(caller_jobs_key(caller), self._ttl)
            await pipe.execute()

    async def caller_usage(self, caller: str) -> tuple[int, int]:
        """How many unfinished jobs the caller has, and how many bytes all its jobs still in Redis store (a job's
        `staged_bytes`: what the API and the workers wrote for it, counted until it expires)."""
        ids = [_text(i) for i in await self._redis.zrange(caller_jobs_key(caller), 0, -1)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(job_key(job_id), "status", "staged_bytes")
            states = await pipe.execute() if ids else []
        gone = [job_id for job_id, (status, _) in zip(ids, states) if status is None]
        if gone:
            await self._redis.zrem(caller_jobs_key(caller), *gone)
        live = [(_text(status), int(size or 0)) for status, size in states if status is not None]
        return sum(status not in FINISHED for status, _ in live), sum(size for _, size in live)

    async def stage(
        self, job_id: str, *, chunk: tuple[int, str] | None, failed_lines: dict[int, str], custom_ids: list[str],
        size: int,
    ) -> None:  # fmt: skip
        """Write what the upload has produced so far: a chunk of requests for the workers (its JSON), the error
        lines of requests refused at submission, and the custom ids (JSON) of both, in submission order; `size`
        bytes in all, added to the job's `staged_bytes`."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(job_key(job_id), "staged_bytes", size)
            if chunk is not None:
                chunk_no, payload = chunk
                pipe.set(chunk_key(job_id, chunk_no), payload, ex=self._ttl)
            if failed_lines:
                pipe.hset(results_key(job_id), mapping=failed_lines)
                pipe.expire(results_key(job_id), self._ttl)
                pipe.hincrby(job_key(job_id), "failed_requests", len(failed_lines))
            if custom_ids:
                pipe.rpush(ids_key(job_id), *custom_ids)
                pipe.expire(ids_key(job_id), self._ttl)
            await pipe.execute()

    async def finalize(self, job_id: str, *, requests: int, pairs: int, chunks: int, window: int) -> None:
        """The upload is complete: record the totals and list the job (finished at once if no chunk)."""
        fields = {"total_requests": requests, "total_pairs": pairs, "chunks_total": chunks, "window": window}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(job_key(job_id), mapping=fields)
            if chunks == 0:
                pipe.hset(job_key(job_id), mapping={
                    "status": "failed", "finished_at": time.time(),
                    "error": "every request of the job failed", "error_type": "job_failed"})  # fmt: skip
            pipe.zadd(JOBS_INDEX, {job_id: time.time()})
            pipe.zremrangebyscore(JOBS_INDEX, 0, time.time() - self._ttl)
            await pipe.execute()

    async def delete(self, job_id: str, chunks: int) -> None:
        """Forget a job whose submission failed."""
        owner = await self._redis.hget(job_key(job_id), "owner")
        await self._redis.delete(*job_keys(job_id), *(chunk_key(job_id, n) for n in range(chunks)))
        if owner is not None:
            await self._redis.zrem(caller_jobs_key(_text(owner)), job_id)

    async def drop_chunks(self, job_id: str, chunks: int) -> None:
        """Delete a cancelled job's staged requests (those its upload staged after the cancel)."""
        await self._redis.eval(_DROP_CHUNKS, 1, job_key(job_id), chunks, chunk_key(job_id, ""))

    async def lease(self, job_id: str, chunks: list[int]) -> None:
        """Note that these chunks are being queued now (see worker/tasks/job_sweeper.py)."""
        if chunks:
            now = time.time()
            await self._redis.hset(leases_key(job_id), mapping={chunk: now for chunk in chunks})
            await self._redis.expire(leases_key(job_id), self._ttl)

    async def get(self, job_id: str, caller: str | None = None) -> Job | None:
        """The job; None if there is none, or if `caller` is given and did not submit it."""
        fields = {_text(k): _text(v) for k, v in (await self._redis.hgetall(job_key(job_id))).items()}
        if not fields or (caller is not None and fields.get("owner") != caller):
            return None
        return job_from_hash(job_id, fields)

    async def recent(self, limit: int, caller: str | None = None) -> list[Job]:
        """The newest jobs: all of them, or those `caller` submitted."""
        index = JOBS_INDEX if caller is None else caller_jobs_key(caller)
        ids = [_text(i) for i in await self._redis.zrevrange(index, 0, limit - 1)]
        jobs = [await self.get(job_id, caller) for job_id in ids]
        return [job for job in jobs if job is not None]

    async def cancel(self, job_id: str) -> str | None:
        status = await self._redis.eval(_CANCEL, 1, job_key(job_id), time.time(), chunk_key(job_id, ""))
        if status == b"cancelled" or status == "cancelled":
            await self._redis.expire(job_key(job_id), self._ttl)
        return _text(status) if status is not None else None

    async def result_lines(self, job: Job) -> AsyncIterator[bytes]:
        """One NDJSON line per request, in submission order, a page at a time.

        A request a cancelled job never ran gets a `cancelled` error line.
        """
        total = job.progress.total_requests
        for start in range(0, total, _RESULT_PAGE):
            indices = list(range(start, min(start + _RESULT_PAGE, total)))
            lines = await self._redis.hmget(results_key(job.id), indices)
            custom_ids = None
            for index, line in zip(indices, lines):
                if line is None:
                    if custom_ids is None:
                        custom_ids = await self._redis.lrange(ids_key(job.id), start, indices[-1])
                    line = _missing_line(index, custom_ids[index - start] if index - start < len(custom_ids) else None)
                yield (_text(line) + "\n").encode()

    @staticmethod
    def is_finished(job: Job) -> bool:
        return job.status in FINISHED


def _missing_line(index: int, custom_id_json) -> str:
    custom_id = json.loads(custom_id_json) if custom_id_json else None
    error = {"type": "cancelled", "message": "the job was cancelled before this request ran"}
    return result_line(index, custom_id, error=error)
