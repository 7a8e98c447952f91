"""Batch-job submission: read the upload request by request, stage chunks in Redis, queue the first ones.

The upload is never held whole: NDJSON is parsed line by line as it arrives, and at most one chunk of
requests is in memory. A request that cannot be served (bad shape, too many passages, another model)
becomes an error line of its own; the job goes on.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import AsyncIterator

from celery import Celery
from pydantic import ValidationError

from api.ranking.input_limits import check_max_chunks, check_request
from api.ranking.schema_errors import describe_validation_errors
from api.jobs.store import JobStore
from api.ranking.service import RankingService, not_served
from shared.celery_app import send_job_chunk
from shared.errors import ErrorType, RerankError
from shared.job_schemas import Job, JobHeader, JobRequest, result_line
from shared.schemas import Truncate
from shared.settings import Settings

Item = dict | RerankError  # a parsed request, or why its line could not be read


async def ndjson_items(stream: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[Item]:
    """Objects of an NDJSON stream, one per non-empty line, without reading the stream whole."""
    buffer, received = b"", 0
    async for piece in stream:
        received += len(piece)
        if received > max_bytes:
            raise RerankError(ErrorType.TOO_LARGE, f"upload over RERANK_JOB_MAX_UPLOAD_BYTES ({max_bytes} bytes)")
        buffer += piece
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield _parse_line(line)
    if buffer.strip():
        yield _parse_line(buffer)


def _parse_line(line: bytes) -> Item:
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return RerankError(ErrorType.INVALID_BODY, "line is not valid UTF-8 JSON")
    return value if isinstance(value, dict) else RerankError(ErrorType.INVALID_BODY, "line is not a JSON object")


async def read_capped(stream: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """A whole (JSON) body, refused once it passes `max_bytes`."""
    body = bytearray()
    async for piece in stream:
        body += piece
        if len(body) > max_bytes:
            raise RerankError(ErrorType.TOO_LARGE, f"upload over RERANK_JOB_MAX_UPLOAD_BYTES ({max_bytes} bytes)")
    return bytes(body)


class JobService:
    def __init__(self, settings: Settings, store: JobStore, celery: Celery, ranking: RankingService) -> None:
        self._settings = settings
        self._store = store
        self._celery = celery
        self._ranking = ranking

    async def submit_json(self, stream: AsyncIterator[bytes], idempotency_key: str | None) -> tuple[Job, bool]:
        """A JSON submission: {"model", "truncate", "requests": [...]}."""
        body = await read_capped(stream, self._settings.job_max_upload_bytes)
        try:
            header = JobHeader.model_validate_json(body)
        except ValidationError as exc:
            raise RerankError(ErrorType.INVALID_BODY, describe_validation_errors(exc.errors())) from None

        async def items() -> AsyncIterator[Item]:
            for item in header.requests:
                yield item if isinstance(item, dict) else RerankError(ErrorType.INVALID_BODY, "not a JSON object")

        return await self._submit(header.model, header.truncate, items(), idempotency_key)

    async def submit_ndjson(
        self, stream: AsyncIterator[bytes], model: str | None, idempotency_key: str | None
    ) -> tuple[Job, bool]:
        """An NDJSON submission: one /v1/ranking body per line, with optional custom_id."""
        items = ndjson_items(stream, self._settings.job_max_upload_bytes)
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

        return await self._submit(model, "NONE", all_items(), idempotency_key)

    async def _submit(
        self, model: str, truncate: Truncate, items: AsyncIterator[Item], idempotency_key: str | None
    ) -> tuple[Job, bool]:
        if model not in await self._ranking.served_models():
            raise not_served(model)
        job_id = uuid.uuid4().hex
        if idempotency_key:
            existing = await self._store.claim_idempotency_key(idempotency_key, job_id)
            if existing is not None:
                job = await self._store.get(existing)
                if job is not None:
                    return job, False
        await self._store.create(job_id, model)
        chunks = 0
        try:
            requests, pairs, chunks = await self._ingest(job_id, model, truncate, items)
            await self._store.finalize(
                job_id, requests=requests, pairs=pairs, chunks=chunks, window=self._settings.job_window
            )
            first = list(range(min(self._settings.job_window, chunks)))
            await self._store.lease(job_id, first)
            await asyncio.to_thread(self._queue_chunks, job_id, model, first)
        except BaseException:
            await self._store.delete(job_id, chunks)
            if idempotency_key:
                await self._store.release_idempotency_key(idempotency_key)
            raise
        job = await self._store.get(job_id)
        assert job is not None
        return job, True

    async def _ingest(self, job_id: str, model: str, truncate: Truncate, items: AsyncIterator[Item]):
        settings = self._settings
        entries: list[dict] = []
        failed: dict[int, str] = {}
        custom_ids: list = []
        requests = pairs = chunks = chunk_pairs = 0

        async def flush(final: bool) -> None:
            nonlocal entries, failed, custom_ids, chunks, chunk_pairs
            chunk = None
            if entries and (final or chunk_pairs >= settings.job_chunk_pairs):
                chunk, chunks = (chunks, entries), chunks + 1
                entries, chunk_pairs = [], 0
            if chunk is not None or final or len(failed) >= 500:
                await self._store.stage(job_id, chunk=chunk, failed_lines=failed, custom_ids=custom_ids)
                failed, custom_ids = {}, []

        async for item in items:
            index = requests
            requests += 1
            if requests > settings.job_max_requests:
                raise RerankError(ErrorType.TOO_LARGE, f"more than {settings.job_max_requests} requests in one job")
            entry = self._entry(index, item, model, truncate)
            custom_ids.append(entry.get("custom_id") if isinstance(entry, dict) else _custom_id(item))
            if isinstance(entry, RerankError):
                failed[index] = result_line(index, _custom_id(item), error=entry.to_dict())
            else:
                entries.append(entry)
                chunk_pairs += len(entry["passages"])
                pairs += len(entry["passages"])
            await flush(final=False)
        await flush(final=True)
        return requests, pairs, chunks

    def _entry(self, index: int, item: Item, model: str, truncate: Truncate) -> dict | RerankError:
        if isinstance(item, RerankError):
            return item
        try:
            request = JobRequest.model_validate(item)
        except ValidationError as exc:
            return RerankError(ErrorType.INVALID_BODY, describe_validation_errors(exc.errors()))
        if request.model is not None and request.model != model:
            return RerankError(ErrorType.NOT_FOUND, f"model {request.model!r} is not this job's model {model!r}")
        try:
            check_request(self._settings, request.query.text, [p.text for p in request.passages])
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


def _custom_id(item: Item) -> str | None:
    value = item.get("custom_id") if isinstance(item, dict) else None
    return value if isinstance(value, str) else None


