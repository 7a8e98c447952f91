"""The batch-job part of the one settings object (shared/settings.py: `Settings` inherits these fields and
reads them from the same `RERANK_`-prefixed environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings


class JobSettings(BaseSettings):
    """Batch jobs: their size, chunks, forward passes, per-caller limits and upload spool."""

    job_ttl: int = Field(
        86400, ge=1, description="Seconds a batch job (its state and results) is kept after it is submitted or finished."
    )
    job_max_requests: int = Field(100_000, ge=1, description="Most ranking requests in one batch job (413 beyond).")
    job_max_upload_bytes: int = Field(
        256 * 1024 * 1024, ge=1024, description="Largest batch-job upload, NDJSON or JSON, in bytes (413 beyond)."
    )
    job_chunk_pairs: int = Field(
        256, ge=1, description="Pairs per chunk task a batch job is split into, a passage counted as the windows it "
        "may need (its request's max_chunks_per_passage).",
    )  # fmt: skip
    job_window: int = Field(
        8, ge=1, description="Chunks of one job queued at a time; each finished chunk queues the next."
    )
    job_batch_tokens: int = Field(
        8192, ge=64,
        description="Most tokens a batch-job forward pass grows to (see RERANK_JOB_FORWARD_MS); a job pass is never "
        "smaller than an interactive one (RERANK_MAX_BATCH_TOKENS).",
    )
    job_forward_ms: float = Field(
        100.0,
        gt=0,
        description="Batch-job forward passes grow past an interactive pass's size up to what takes about this long "
        "at the measured throughput (at most RERANK_JOB_BATCH_TOKENS), so an interactive request waits at most "
        "one such pass behind a job.",
    )
    job_visibility_timeout: int = Field(
        600, ge=2, description="Seconds before a chunk taken by a worker that died is handed to another worker."
    )
    job_concurrency: int = Field(
        4, ge=1,
        description="Batch-job chunks one worker scores at once; further chunks wait for a slot in their task thread, "
        "chunks holding at most half the task threads (RERANK_WORKER_CONCURRENCY), so that jobs never hold the "
        "threads interactive requests need.",
    )  # fmt: skip
    job_max_active: int = Field(
        16, ge=1,
        description="Unfinished batch jobs one caller (API key, or client address without keys) may have; beyond it "
        "429 with Retry-After.",
    )  # fmt: skip
    job_max_staged_bytes: int = Field(
        1024 * 1024 * 1024, ge=1024,
        description="Bytes one caller's batch jobs may store in Redis (requests, error lines, custom ids, results), "
        "each job's counted until it expires, finished or not; beyond it 429 with Retry-After, and nothing of the "
        "refused job is kept.",
    )  # fmt: skip
    job_max_spool_bytes: int = Field(
        64 * 1024 * 1024, ge=0,
        description="Bytes of requests a JSON job upload may hold in its spool while its `model` or `truncate` is "
        "not yet read (they come after `requests`); beyond it 413. Put both before `requests` to need none.",
    )  # fmt: skip
    job_spool_dir: Path | None = Field(
        None, description="Directory of the spool files of JSON job uploads (past 4 MiB). Default: the system's "
        "temporary directory (TMPDIR, else /tmp).",
    )  # fmt: skip
