"""Batch-job submission: read the upload request by request, stage chunks in Redis, queue the first ones.

The upload is never held whole (api/jobs/uploads.py): NDJSON and JSON are parsed as they arrive, off the
event loop, and at most one chunk of requests is in memory. A request that cannot be served (bad shape,
too many passages, another model) becomes an error line of its own; the job goes on. Each caller (API key,
or client address without keys) has at most RERANK_JOB_MAX_ACTIVE unfinished jobs, and its jobs hold at most
RERANK_JOB_MAX_STAGED_BYTES in Redis: every byte a job stores (its chunks, error lines, custom ids, results)
counts until the job expires, finished or not. A submission that fails on any path (a limit, a body broken
part-way, a client that left) deletes everything it staged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import AsyncIterator

from celery import Celery
from pydantic import ValidationError

from api.jobs.store import JobStore
from api.jobs.uploads import Item, JsonJobParser, NdjsonParser, Spool, pieces, read_items
from api.ranking.input_limits import check_max_chunks, check_request
from api.ranking.schema_errors import describe_validation_errors
from api.ranking.service import RankingService, not_served
from shared.celery_app import send_job_chunk
from shared.errors import ErrorType, RerankError, shown
from shared.job_schemas import MAX_CUSTOM_ID_CHARS, Job, JobRequest, result_line
from shared.schemas import Truncate
from shared.settings import Settings

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
LIMIT_RETRY_AFTER = 30  # seconds: about as long as a small job takes to finish


@dataclass
class Staged:
    """What a submission has written so far: its chunks (numbered from 0) and the bytes it stores."""

    chunks: int = 0
    bytes: int = 0


class JobService:
    def __init__(self, settings: Settings, store: JobStore, celery: Celery, ranking: RankingService) -> None:
        self._settings = settings
        self._store = store
        self._celery = celery
        self._ranking = ranking

    async def submit_json(self, stream: AsyncIterator[bytes], idempotency_key: str | None, caller: str) -> tuple[Job, bool]:
        """A JSON submission: {"model", "truncate", "requests": [...]}.

        Requests that come before the job's model and truncate are known (a client that sorts its keys puts
        `requests` before `truncate`) wait in a spool, on disk beyond a few MiB (RERANK_JOB_SPOOL_DIR), until they
        are: at most RERANK_JOB_MAX_SPOOL_BYTES of them, and only for a caller within its limits.
        """
        settings = self._settings
        _check_idempotency_key(idempotency_key)
        if not (idempotency_key and await self._store.idempotency_job(caller, idempotency_key)):
            await self._admit(caller)  # refused before a byte is spooled; _submit admits the job itself
        parser = JsonJobParser(settings.max_body_bytes)
        upload = pieces(stream, settings.job_max_upload_bytes)
        spool = Spool(settings.max_body_bytes, settings.job_max_spool_bytes, settings.job_spool_dir)

        def read_ahead(piece: bytes | None) -> None:
            spool.extend(parser.feed(piece) if piece is not None else parser.close())

        async def items() -> AsyncIterator[Item]:
            async for item in spool.replay():
                yield item
            async for item in read_items(parser, upload):
                yield item

        with spool:
            async for piece in upload:
                await asyncio.to_thread(read_ahead, piece)
                if parser.settled:
                    break
            else:
                await asyncio.to_thread(read_ahead, None)
            model, truncate = parser.job_fields()
            return await self._submit(model, truncate, items(), idempotency_key, caller)

    async def submit_ndjson(
        self, stream: AsyncIterator[bytes], model: str | None, idempotency_key: str | None, caller: str
    ) -> tuple[Job, bool]:
        """An NDJSON submission: one /v1/ranking body per line, with optional custom_id."""
        upload = pieces(stream, self._settings.job_max_upload_bytes)
        items = read_items(NdjsonParser(self._settings.max_body_bytes), upload)
        first = await anext(items, None)
        if first is None:
            raise RerankError(ErrorType.INVALID_BODY, "the upload holds no request")
        model = model or (first.get("model") if isinstance(first, dict) else None)
        if not isinstance(model, str) or not model:
            raise RerankError(ErrorType.INVALID_BODY, "no model: give it on the first line or as ?model=")

        async def all_items() -> AsyncIterator[Item]:
            yield first
            async for item in items:
                yield item

        return await self._submit(model, "NONE", all_items(), idempotency_key, caller)

    async def _submit(
        self, model: str, truncate: Truncate, items: AsyncIterator[Item], idempotency_key: str | None, caller: str
    ) -> tuple[Job, bool]:
        _check_idempotency_key(idempotency_key)
        if model not in await self._ranking.served_models():
            raise not_served(model)
        job_id = uuid.uuid4().hex
        if idempotency_key:
            existing = await self._store.claim_idempotency_key(caller, idempotency_key, job_id)
            if existing is not None:
                job = await self._store.get(existing)
                if job is not None:
                    return job, False
        try:
            staged_elsewhere = await self._admit(caller)
        except BaseException:
            if idempotency_key:
                await self._store.release_idempotency_key(caller, idempotency_key)
            raise
        await self._store.create(job_id, model, caller)
        staged = Staged()
        try:
            requests, pairs = await self._ingest(job_id, model, truncate, items, staged_elsewhere, staged)
            await self._store.finalize(
                job_id, requests=requests, pairs=pairs, chunks=staged.chunks, window=self._settings.job_window
            )
            first = list(range(min(self._settings.job_window, staged.chunks)))
            await self._store.lease(job_id, first)
            await asyncio.to_thread(self._queue_chunks, job_id, model, first)
        except BaseException:
            await _even_if_cancelled(self._discard(job_id, staged.chunks, caller, idempotency_key))
            raise
        job = await self._store.get(job_id)
        assert job is not None
        if job.status == "cancelled" and staged.chunks:  # cancelled while its upload was read: drop what came after
            await self._store.drop_chunks(job_id, staged.chunks)
        return job, True

    async def _discard(self, job_id: str, chunks: int, caller: str, idempotency_key: str | None) -> None:
        """Delete everything a failed submission staged, and free its Idempotency-Key."""
        await self._store.delete(job_id, chunks)
        if idempotency_key:
            await self._store.release_idempotency_key(caller, idempotency_key)

    async def _admit(self, caller: str) -> int:
        """Refuse a new job of a caller at its limits (429); the bytes its jobs store until they expire."""
        settings = self._settings
        active, staged = await self._store.caller_usage(caller)
        if active >= settings.job_max_active:
            raise RerankError(ErrorType.OVERLOADED, f"{active} unfinished jobs already: at most {settings.job_max_active} "
                              "per caller (RERANK_JOB_MAX_ACTIVE); retry once one has finished",
                              retry_after=LIMIT_RETRY_AFTER)  # fmt: skip
        return staged

    async def _ingest(
        self, job_id: str, model: str, truncate: Truncate, items: AsyncIterator[Item], elsewhere: int, staged: Staged
    ) -> tuple[int, int]:
        """Stage the job's requests (counting into `staged` as it goes); its request and pair totals."""
        settings = self._settings
        entries: list[dict] = []
        failed: dict[int, str] = {}
        custom_ids: list[str] = []  # each as JSON
        requests = pairs = chunk_pairs = 0

        async def flush(final: bool) -> None:
            nonlocal entries, failed, custom_ids, chunk_pairs
            chunk = None
            if entries and (final or chunk_pairs >= settings.job_chunk_pairs):
                chunk = (staged.chunks, json.dumps(entries, separators=(",", ":")))
                entries, chunk_pairs = [], 0
            if chunk is not None or final or len(failed) >= 500:
                size = len(chunk[1]) if chunk else 0
                size += sum(map(len, failed.values())) + sum(map(len, custom_ids))
                if elsewhere + staged.bytes + size > settings.job_max_staged_bytes:
                    raise RerankError(ErrorType.OVERLOADED, f"this caller's jobs would hold more than "
                                      f"{settings.job_max_staged_bytes} bytes in Redis (RERANK_JOB_MAX_STAGED_BYTES; a "
                                      "job's bytes count until it expires); retry later",
                                      retry_after=LIMIT_RETRY_AFTER)  # fmt: skip
                staged.chunks += chunk is not None  # counted before the write: a failed write is deleted too
                staged.bytes += size
                await self._store.stage(job_id, chunk=chunk, failed_lines=failed, custom_ids=custom_ids, size=size)
                failed, custom_ids = {}, []

        async for item in items:
            index = requests
            requests += 1
            if requests > settings.job_max_requests:
                raise RerankError(ErrorType.TOO_LARGE, f"more than {settings.job_max_requests} requests in one job")
            entry = self._entry(index, item, model, truncate)
            custom_ids.append(json.dumps(entry.get("custom_id") if isinstance(entry, dict) else _custom_id(item)))
            if isinstance(entry, RerankError):
                failed[index] = result_line(index, _custom_id(item), error=entry.to_dict())
            else:
                entries.append(entry)
                chunk_pairs += len(entry["passages"]) * entry["max_chunks_per_passage"]  # the windows it may need
                pairs += len(entry["passages"])
            await flush(final=False)
        await flush(final=True)
        return requests, pairs

    def _entry(self, index: int, item: Item, model: str, truncate: Truncate) -> dict | RerankError:
        if isinstance(item, RerankError):
            return item
        try:
            request = JobRequest.model_validate(item)
        except ValidationError as exc:
            return RerankError(ErrorType.INVALID_BODY, describe_validation_errors(exc.errors()))
        if request.model is not None and request.model != model:
            return RerankError(ErrorType.NOT_FOUND, f"model {shown(request.model)} is not this job's model {model!r}")
        try:
            check_request(self._settings, request.query.text, [p.text for p in request.passages], request.instruction)
            check_max_chunks(self._settings, request.max_chunks_per_passage)
        except RerankError as error:
            return error
        return {
            "index": index,
            "custom_id": request.custom_id,
            "query": request.query.text,
            "passages": [p.text for p in request.passages],
            "truncate": request.truncate or truncate,
            "limit": request.top_n if request.top_n is not None else request.top_k,
            "instruction": request.instruction,
            "max_chunks_per_passage": request.max_chunks_per_passage or 1,
        }

    def _queue_chunks(self, job_id: str, model: str, chunks: list[int]) -> None:
        for chunk in chunks:
            send_job_chunk(self._celery, job_id=job_id, model=model, chunk=chunk, window=self._settings.job_window)


def _check_idempotency_key(key: str | None) -> None:
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise RerankError(ErrorType.VALIDATION, "Idempotency-Key must be 1 to 128 characters of [A-Za-z0-9._:-]")


def _custom_id(item: Item) -> str | None:
    """The custom_id of a request refused at submission, if it is one that may be stored and echoed."""
    value = item.get("custom_id") if isinstance(item, dict) else None
    return value if isinstance(value, str) and len(value) <= MAX_CUSTOM_ID_CHARS else None


async def _even_if_cancelled(cleanup) -> None:
    """Run `cleanup` to its end even if the task awaiting it is cancelled meanwhile; log (never raise) its failure,
    so that the error that led to it is the one reported."""
    task = asyncio.ensure_future(cleanup)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved: no warning
    except Exception:
        log.warning("could not delete what a failed job submission staged; it expires with RERANK_JOB_TTL",
                    exc_info=True)  # fmt: skip


