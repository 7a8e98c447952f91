"""A guard around a kombu race that would end a worker when Redis goes away.

When the broker connection drops while tasks are held, closing the channel tries to restore their
unacknowledged messages, and acks of tasks finishing then run against the torn-down channel: kombu's
Redis transport raises AttributeError (reading the closed connection's parameters). Celery treats
that as an unrecoverable error and the worker exits instead of reconnecting. Raised as a connection
error, it is logged and ignored; the messages stay in Redis's unacked index and are restored after
the visibility timeout (batch-job chunks commit exactly once, so a second delivery changes nothing;
see worker/tasks/job_chunks.py).
"""

from __future__ import annotations

import functools

import redis
from kombu.transport import redis as redis_transport


def install() -> None:
    """Make acks, rejects and restores on a torn-down broker connection raise ConnectionError (idempotent)."""
    qos = redis_transport.QoS
    for name in ("ack", "reject", "restore_unacked"):
        method = getattr(qos, name)
        if getattr(method, "_rerank_guarded", False):
            continue

        @functools.wraps(method)
        def guarded(self, *args, _method=method, **kwargs):
            try:
                return _method(self, *args, **kwargs)
            except AttributeError as exc:
                raise redis.exceptions.ConnectionError("the broker connection is closed") from exc

        guarded._rerank_guarded = True
        setattr(qos, name, guarded)
