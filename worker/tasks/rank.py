"""The interactive task: score one ranking request's pairs and return their logits and token counts."""

from __future__ import annotations

import logging
import time

from celery import current_task, signals

from shared.celery_app import RANK_TASK
from shared.errors import ErrorType, RerankError
from shared.schemas import RankTask
from shared.settings import get_settings
from shared.task_keys import TASK_KEY_TTL_SLACK, task_cancelled_key, task_worker_key
from worker.engine.client import DeadlineExceeded
from worker.tasks.app import app, current_state, fleet_task, submit_request

log = logging.getLogger(__name__)

WAIT_SLACK_SECONDS = 5.0  # past a request's deadline, a task stops waiting for an engine that does not answer


def claim(task: RankTask) -> None:
    """Record that this worker scores the current task; refuse it if its client left or its deadline passed.

    The API watches the recorded worker's heartbeat, to send the task again if this process dies.
    """
    request = current_task.request
    ttl = int(max((task.deadline or time.time()) - time.time(), 0)) + TASK_KEY_TTL_SLACK
    with app.backend.client.pipeline() as pipe:
        pipe.set(task_worker_key(request.id), request.hostname or "", ex=ttl)
        pipe.exists(task_cancelled_key(request.id))
        _, cancelled = pipe.execute()
    if cancelled:
        raise RerankError(ErrorType.TIMEOUT, "the client gave up before the request was scored")
    if task.deadline is not None and task.deadline < time.time():
        raise RerankError(ErrorType.TIMEOUT, "the request's deadline passed before it was scored")


@signals.task_received.connect(weak=False)
def claim_on_receipt(request, **_) -> None:
    """Record this worker as the owner of a ranking task the moment its message is received, before it waits
    for a thread: if this process dies holding it, the API sees the owner's heartbeat stop and sends it again
    (api/ranking/task_watch.py). Runs in the consumer's thread; a Redis error only costs that early notice."""
    if request.name != RANK_TASK:
        return
    try:
        ttl = int(get_settings().request_timeout) + TASK_KEY_TTL_SLACK
        app.backend.client.set(task_worker_key(request.id), request.hostname or "", ex=ttl)
    except Exception as exc:  # noqa: BLE001 - never let it stop the consumer
        log.warning("could not record the owner of task %s: %s", request.id, exc)


@fleet_task(RANK_TASK)
def rank(payload: dict) -> dict:
    """Score every (query, passage) pair of one ranking request."""
    task = RankTask.model_validate(payload)
    state = current_state()
    if task.model_id != state.model_id:
        raise RerankError(ErrorType.NOT_FOUND, f"this worker serves {state.model_id!r}, not {task.model_id!r}")
    claim(task)
    scores = submit_request(state, task.query, task.passages, task.truncate, max_passage_tokens=task.max_passage_tokens,
                            instruction=task.instruction, max_chunks=task.max_chunks_per_passage,
                            deadline=task.deadline)  # fmt: skip
    wait = None if task.deadline is None else max(task.deadline - time.time(), 0) + WAIT_SLACK_SECONDS
    try:
        logits, token_counts = scores(wait)
    except (DeadlineExceeded, TimeoutError):
        raise RerankError(ErrorType.TIMEOUT, "the request's deadline passed before it was scored") from None
    return {"logits": logits.tolist(), "token_counts": token_counts.tolist()}
