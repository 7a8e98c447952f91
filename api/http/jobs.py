"""Batch-job routes (API.md section 4): submit, poll, list, cancel, stream results."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from api.http.dependencies import job_service, job_store
from api.http.errors import ERROR_RESPONSES
from api.http.middleware.guards import NDJSON_TYPES, media_type
from api.jobs.service import JobService
from api.jobs.store import JobStore
from shared.errors import ErrorType, RerankError, shown
from shared.job_schemas import Job, JobHeader, JobList

router = APIRouter(prefix="/v1/ranking/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

_SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": JobHeader.model_json_schema()},
            "application/x-ndjson": {"schema": {"type": "string", "description": "One JobRequest per line."}},
        },
    }
}


def _caller(request: Request) -> str:
    return request.state.caller


def _reader(request: Request) -> str | None:
    """Whose jobs a request may read and cancel: with API keys, the caller's own; without, any."""
    return request.state.caller if request.app.state.settings.api_keys else None


async def _job(job_id: str, store: JobStore, reader: str | None) -> Job:
    job = await store.get(job_id, reader)
    if job is None:
        raise RerankError(ErrorType.NOT_FOUND, f"no job {shown(job_id)} (jobs are kept for RERANK_JOB_TTL seconds)")
    return job


@router.post("", status_code=202, response_model=Job, openapi_extra=_SUBMIT_BODY)
async def submit_job(
    request: Request, model: str | None = Query(None, description="The job's model, for NDJSON uploads."),
    service: JobService = Depends(job_service),
) -> JSONResponse:  # fmt: skip
    """Submit a batch job: a JSON body with `requests`, or an NDJSON upload of /v1/ranking bodies."""
    idempotency_key = request.headers.get("idempotency-key")
    if media_type(request.headers) in NDJSON_TYPES:
        job, created = await service.submit_ndjson(request.stream(), model, idempotency_key, _caller(request))
    else:
        job, created = await service.submit_json(request.stream(), idempotency_key, _caller(request))
    return JSONResponse(
        job.model_dump(), status_code=202 if created else 200, headers={"Location": f"/v1/ranking/jobs/{job.id}"}
    )


@router.get("", response_model=JobList)
async def list_jobs(
    request: Request, limit: int = Query(20, ge=1, le=100), store: JobStore = Depends(job_store)
) -> JobList:
    """The most recent jobs, newest first (with API keys, the caller's own)."""
    return JobList(data=await store.recent(limit, _reader(request)))


@router.get("/{job_id}", response_model=Job)
async def get_job(job_id: str, request: Request, store: JobStore = Depends(job_store)) -> Job:
    """A job's status and progress."""
    return await _job(job_id, store, _reader(request))


@router.get("/{job_id}/results", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}})  # fmt: skip
async def job_results(job_id: str, request: Request, store: JobStore = Depends(job_store)) -> StreamingResponse:
    """The job's results as NDJSON, one line per request in submission order, streamed."""
    job = await _job(job_id, store, _reader(request))
    if not store.is_finished(job):
        raise RerankError(ErrorType.CONFLICT, f"job {job_id} is {job.status}; its results come once it has finished")
    return StreamingResponse(store.result_lines(job), media_type="application/x-ndjson")


@router.delete("/{job_id}", response_model=Job)
async def cancel_job(job_id: str, request: Request, store: JobStore = Depends(job_store)) -> Job:
    """Cancel a job: chunks that have not started are dropped; finished jobs stay as they are."""
    await _job(job_id, store, _reader(request))
    await store.cancel(job_id)
    return await _job(job_id, store, _reader(request))
