"""Redis keys of batch jobs. `{id}` is a Redis Cluster hash tag, so one job's keys share a slot.

- `rerank:job:{id}` hash: model, owner (the caller that submitted it), status, timestamps, error, counters
  (total_requests, total_pairs, completed_requests, failed_requests, completed_pairs, chunks_total,
  chunks_done, staged_bytes: every byte stored for the job, counted against its caller until it expires).
- `rerank:job:{id}:chunk:<n>` string: JSON list of the requests of chunk n; deleted once committed,
  and all of them when the job is cancelled.
- `rerank:job:{id}:done` set: numbers of the committed chunks (a re-delivered chunk commits once).
- `rerank:job:{id}:results` hash: request index -> its NDJSON result line.
- `rerank:job:{id}:ids` list: each request's custom_id (JSON), in submission order.
- `rerank:job:{id}:leases` hash: chunk number -> unix time it was last queued, started, or seen running;
  a chunk whose lease is older than RERANK_JOB_VISIBILITY_TIMEOUT is queued again (worker/tasks/job_sweeper.py).
- `rerank:jobs` sorted set: job ids by creation time, for listing.
- `rerank:jobs:caller:<caller>` sorted set: the ids of one caller's jobs by creation time (its listing when
  API keys are in use, its unfinished jobs counted against RERANK_JOB_MAX_ACTIVE, and the `staged_bytes` of
  all its jobs still in Redis against RERANK_JOB_MAX_STAGED_BYTES); ids of expired jobs are dropped as it is read.
- `rerank:job-key:<caller>:<Idempotency-Key>` string: the job id that caller submitted with that key.
Every job key expires RERANK_JOB_TTL seconds after submission, and again after the job finishes.
"""

from __future__ import annotations

JOBS_INDEX = "rerank:jobs"


def job_key(job_id: str) -> str:
    return f"rerank:job:{{{job_id}}}"


def chunk_key(job_id: str, chunk_no: int | str) -> str:
    return f"{job_key(job_id)}:chunk:{chunk_no}"


def done_key(job_id: str) -> str:
    return f"{job_key(job_id)}:done"


def results_key(job_id: str) -> str:
    return f"{job_key(job_id)}:results"


def ids_key(job_id: str) -> str:
    return f"{job_key(job_id)}:ids"


def leases_key(job_id: str) -> str:
    return f"{job_key(job_id)}:leases"


def idempotency_key(caller: str, key: str) -> str:
    return f"rerank:job-key:{caller}:{key}"


def caller_jobs_key(caller: str) -> str:
    return f"{JOBS_INDEX}:caller:{caller}"


def job_keys(job_id: str) -> list[str]:
    """The keys that live as long as the job (chunk payloads aside)."""
    return [job_key(job_id), done_key(job_id), results_key(job_id), ids_key(job_id), leases_key(job_id)]
