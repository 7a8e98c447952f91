"""The Celery configuration both sides use: the API sends tasks by name, workers consume them."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from shared.settings import Settings

RANK_TASK = "rerank.rank"
JOB_CHUNK_TASK = "rerank.job_chunk"


def interactive_queue(model_id: str) -> str:
    """The queue of synchronous ranking requests for one model."""
    return f"rank.{model_id}.interactive"


def batch_queue(model_id: str) -> str:
    """The queue of batch-job chunks for one model; workers serve it after interactive work."""
    return f"rank.{model_id}.batch"


def worker_queues(model_id: str) -> list[Queue]:
    """The queues a worker of `model_id` consumes, declared as Celery declares a queue it is sent by name.

    Interactive requests are acknowledged as soon as one of a worker's threads takes them
    (`task_acks_late=False`), so their queue is consumed with `no_ack`: kombu's Redis transport then skips
    recording every message as unacked and deleting the record a moment later, two round trips per
    request. Batch-job chunks are acknowledged late and keep the record: a chunk held by a worker that died
    returns after the visibility timeout.
    """
    interactive, batch = interactive_queue(model_id), batch_queue(model_id)
    return [Queue(interactive, Exchange(interactive), routing_key=interactive, no_ack=True),
            Queue(batch, Exchange(batch), routing_key=batch)]  # fmt: skip


def send_job_chunk(app: Celery, *, job_id: str, model: str, chunk: int, window: int, countdown: float | None = None) -> None:
    """Queue one chunk of a batch job (its lease must be written first: shared/job_keys.leases_key), to run
    no sooner than `countdown` seconds from now if given."""
    app.send_task(
        JOB_CHUNK_TASK,
        args=[{"job_id": job_id, "chunk": chunk, "window": window, "model": model}],
        queue=batch_queue(model),
        countdown=countdown,
        retry=False,
    )


def create_celery_app(settings: Settings, *, result_backend: bool = True) -> Celery:
    """A Celery app on the settings' Redis, JSON only, tuned for short interactive tasks.

    Workers store results in Redis. The API passes `result_backend=False`: it reads results itself
    (api/ranking/result_waiter.py), and Celery's own Redis result consumer would subscribe the sending process
    to every task's channel and never let go.
    """
    app = Celery("rerank_fleet", broker=settings.redis_url, backend=settings.redis_url if result_backend else None)
    if settings.redis_url.startswith("redis://"):  # rediss:// (TLS) and others keep kombu's own transport
        app.conf.broker_transport = "shared.redis_transport:Transport"
    app.conf.update(
        # JSON only: a pickle payload is refused by both sides.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_expires=settings.result_expires,
        # A request's answer is waited for by one client; losing it on a worker crash costs a retry,
        # holding it unacked would redeliver it only after the visibility timeout, long after the client left.
        task_acks_late=False,
        # Each worker thread reserves one request at a time so that idle workers get the next one.
        worker_prefetch_multiplier=1,
        task_create_missing_queues=True,
        broker_connection_retry_on_startup=True,
        # Redis may restart: workers reconnect for as long as it takes; the API's sends use retry=False
        # and a short connect timeout, so a request fails fast with 503 instead of waiting for Redis.
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        broker_connection_timeout=1,
        broker_transport_options={
            "socket_connect_timeout": 2,
            # Batch-job chunks are acknowledged late: a chunk held by a worker that died returns to its
            # queue after this many seconds, checked every few seconds.
            "visibility_timeout": settings.job_visibility_timeout,
            "unacked_restore_interval": max(1, min(10, settings.job_visibility_timeout // 3)),
            "unacked_restore_throttle": 1,
        },
        redis_socket_connect_timeout=2,
        redis_backend_health_check_interval=10,
        task_default_queue=interactive_queue(settings.served_model_id),
        # Task events for Flower: senders announce each task (with its argsrepr: counts, never texts),
        # workers report received/started/succeeded/failed and their heartbeats.
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
    )
    return app
