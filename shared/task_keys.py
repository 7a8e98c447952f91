"""Redis keys of interactive requests in flight, shared by the API (writes, watches) and workers.

- `rerank:admitted:<model_id>` sorted set: member = task id, score = the request's deadline (unix time).
  The API admits a request only while fewer than RERANK_MAX_QUEUED_REQUESTS members are live; members
  past their deadline no longer count, so a crashed API process cannot leak places.
- `rerank:task:<task id>:worker` string: the Celery node name of the worker scoring the task, written when
  it starts; the API watches that worker's heartbeat to notice a worker lost mid-request.
- `rerank:task:<task id>:cancelled` string: present once the client gave up; a worker skips the task.
Both task keys expire with the request (they never outlive RERANK_REQUEST_TIMEOUT by much).
"""

from __future__ import annotations

TASK_KEY_TTL_SLACK = 10  # seconds a task key outlives its request's deadline


def admitted_key(model_id: str) -> str:
    return f"rerank:admitted:{model_id}"


def task_worker_key(task_id: str) -> str:
    return f"rerank:task:{task_id}:worker"


def task_cancelled_key(task_id: str) -> str:
    return f"rerank:task:{task_id}:cancelled"
