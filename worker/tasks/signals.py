"""Celery signal hooks of a worker: the request id in the log context, one log line per task, failures counted.

A ranking task's payload carries the API's request id (shared/schemas.RankTask); while the task runs, every
line its thread logs carries that id (shared/log_format.py). The line logged when a task ends gives its
name, counts, outcome and duration, never query or passage text (a batch-job chunk queued again for want of a
slot is counted instead, and logged at DEBUG). Tasks that answer with an error, raise,
expire in the queue or are revoked count in `rerank_worker_failures_total`.
"""

from __future__ import annotations

import logging
import time

from celery import signals

from shared.errors import ErrorAnswer
from shared.log_format import request_id
from worker.metrics import TaskMetrics

log = logging.getLogger("worker.tasks")


def install_task_signals(metrics: TaskMetrics) -> None:
    """Connect the hooks for this process (once, from the worker entrypoint)."""
    started: dict[str, tuple[float, object]] = {}  # task id -> (start time, request-id context token)

    @signals.task_prerun.connect(weak=False)
    def _before(task_id: str, args: tuple = (), **_) -> None:
        payload = args[0] if args and isinstance(args[0], dict) else {}
        started[task_id] = (time.perf_counter(), request_id.set(payload.get("request_id")))

    @signals.task_postrun.connect(weak=False)
    def _after(task_id: str, task, args: tuple = (), retval=None, **_) -> None:
        began, token = started.pop(task_id, (time.perf_counter(), None))
        payload = args[0] if args and isinstance(args[0], dict) else {}
        error = retval.error if isinstance(retval, ErrorAnswer) else None
        outcome = "ok"
        if isinstance(error, dict):
            outcome = str(error.get("type", "internal_error"))
            metrics.record_failure(task.name, outcome)
        fields = {
            "task": task.name, "task_id": task_id, "worker": task.request.hostname, "outcome": outcome,
            "model": payload.get("model_id") or payload.get("model"), "job_id": payload.get("job_id"),
            "chunk": payload.get("chunk"),
            "passages": len(payload["passages"]) if isinstance(payload.get("passages"), list) else None,
        }  # fmt: skip
        deferred = isinstance(retval, dict) and isinstance(retval.get("ok"), dict) and retval["ok"].get("deferred")
        if deferred:  # a batch-job chunk queued again for want of a slot: counted, not logged at INFO
            metrics.job_chunk_requeues.inc()
        log.log(logging.DEBUG if deferred else logging.INFO, "%s %s in %.3fs", task.name, outcome,
                time.perf_counter() - began,
                extra={key: value for key, value in fields.items() if value is not None})  # fmt: skip
        if token is not None:
            request_id.reset(token)

    @signals.task_failure.connect(weak=False)
    def _raised(sender, exception: BaseException, **_) -> None:
        if not isinstance(exception, ErrorAnswer):  # an error answer is counted by its type in _after
            metrics.record_failure(sender.name, type(exception).__name__)

    @signals.task_revoked.connect(weak=False)
    def _dropped(sender, request, expired: bool = False, **_) -> None:
        """A task that expired in the queue (its client had given up) or was revoked: never run."""
        outcome = "expired" if expired else "revoked"
        metrics.record_failure(sender.name, outcome)
        log.warning("%s %s before it ran", sender.name, outcome, extra={"task": sender.name, "task_id": request.id})
