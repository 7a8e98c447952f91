"""Wire schemas of batch jobs (API.md section 4) and the chunk payload workers read."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.schemas import INSTRUCTION_DESCRIPTION, MAX_CHUNKS_DESCRIPTION, Passage, Query, Truncate

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: tuple[str, ...] = ("succeeded", "failed", "cancelled")
MAX_CUSTOM_ID_CHARS = 512  # a longer custom_id fails its request, and is never stored or echoed


class JobRequest(BaseModel):
    """One ranking request of a job: a /v1/ranking body with an optional custom_id.

    `model` and `truncate` may be left out (the job's apply); NDJSON lines usually carry them.
    """

    model_config = ConfigDict(extra="forbid")

    custom_id: str | None = Field(
        None, max_length=MAX_CUSTOM_ID_CHARS, description="Your id for this request, echoed in its result."
    )
    model: str | None = Field(None, description="Must be the job's model when given.")
    query: Query
    passages: list[Passage] = Field(..., min_length=1)
    truncate: Truncate | None = Field(None, description="Overrides the job's truncate for this request.")
    top_n: int | None = Field(None, ge=1)
    top_k: int | None = Field(None, ge=1)
    instruction: str | None = Field(None, description=INSTRUCTION_DESCRIPTION)
    max_chunks_per_passage: int | None = Field(None, ge=1, strict=True, description=MAX_CHUNKS_DESCRIPTION)

    @field_validator("truncate", mode="before")
    @classmethod
    def _upper_truncate(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class JobHeader(BaseModel):
    """The job-level fields of a JSON submission (its `requests` are read one by one)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., min_length=1, description="A served model id.")
    truncate: Truncate = Field("NONE", description="Default truncate of the job's requests.")
    requests: list[Any] = Field(..., min_length=1, description="Ranking requests (see JobRequest).")

    @field_validator("truncate", mode="before")
    @classmethod
    def _upper_truncate(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class ChunkEntry(BaseModel):
    """One request as a worker reads it from a chunk."""

    index: int
    custom_id: str | None = None
    query: str
    passages: list[str]
    truncate: Truncate
    limit: int | None = None
    instruction: str | None = None
    max_chunks_per_passage: int = 1


class JobProgress(BaseModel):
    total_requests: int = Field(..., description="Requests in the job.")
    completed_requests: int = Field(..., description="Requests answered with rankings.")
    failed_requests: int = Field(..., description="Requests answered with an error line.")
    total_pairs: int = Field(..., description="(query, passage) pairs in the job.")
    completed_pairs: int = Field(..., description="Pairs of the completed requests.")


class JobError(BaseModel):
    message: str
    type: str


class Job(BaseModel):
    id: str
    object: Literal["ranking.job"] = "ranking.job"
    model: str
    status: JobStatus
    progress: JobProgress
    created_at: float = Field(..., description="Unix time of submission.")
    started_at: float | None = None
    finished_at: float | None = None
    error: JobError | None = None


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Job]


def job_from_hash(job_id: str, fields: dict[str, str]) -> Job:
    """A Job from its Redis hash (shared/job_keys.job_key)."""

    def number(name: str) -> int:
        return int(fields.get(name) or 0)

    def moment(name: str) -> float | None:
        return float(fields[name]) if fields.get(name) else None

    error = None
    if fields.get("error"):
        error = JobError(message=fields["error"], type=fields.get("error_type") or "job_error")
    return Job(
        id=job_id,
        model=fields.get("model", ""),
        status=fields.get("status", "queued"),  # type: ignore[arg-type]
        progress=JobProgress(
            total_requests=number("total_requests"),
            completed_requests=number("completed_requests"),
            failed_requests=number("failed_requests"),
            total_pairs=number("total_pairs"),
            completed_pairs=number("completed_pairs"),
        ),
        created_at=moment("created_at") or 0.0,
        started_at=moment("started_at"),
        finished_at=moment("finished_at"),
        error=error,
    )


def result_line(index: int, custom_id: str | None, *, response: dict | None = None, error: dict | None = None) -> str:
    """One NDJSON result line: `{"custom_id"?, "index", "response"}` or `{"custom_id"?, "index", "error"}`."""
    line: dict[str, Any] = {} if custom_id is None else {"custom_id": custom_id}
    line["index"] = index
    if error is not None:
        line["error"] = error
    else:
        line["response"] = response
    return json.dumps(line, separators=(",", ":"))
