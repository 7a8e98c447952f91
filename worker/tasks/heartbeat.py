"""A worker's announcements in Redis: which model it serves, where, and its batch statistics.

The key scheme is documented in shared/registry.py; the API reads it for readiness and /v1/models.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from typing import Callable

import redis

from shared.registry import model_workers_key, worker_info_key

log = logging.getLogger(__name__)


class Heartbeat:
    """Refreshes this worker's registration every `interval` seconds until stopped."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        worker_name: str,
        model_id: str,
        describe: Callable[[], dict | None],
        interval: float,
        ttl: float,
    ) -> None:
        self._client = client
        self._name = worker_name
        self._model_id = model_id
        self._describe = describe
        self._interval = interval
        self._ttl = ttl
        self._stop = threading.Event()
        self._lock = threading.Lock()  # a withdrawal waits for a beat in progress, so it is never undone by it
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._started_at = time.time()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and withdraw the registration, so the API stops routing to this worker."""
        self._stop.set()
        self._thread.join(timeout=self._interval + 1)
        self.withdraw()

    def withdraw(self) -> None:
        """Remove this worker's registration now (it beats again once `describe` says it serves)."""
        try:
            with self._lock, self._client.pipeline() as pipe:
                pipe.zrem(model_workers_key(self._model_id), self._name)
                pipe.delete(worker_info_key(self._name))
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not withdraw worker registration: %s", exc)

    def beat(self) -> None:
        """Write one registration (also called by tests), or withdraw it while `describe` says None (not serving)."""
        with self._lock:
            described = self._describe()
            if described is not None:
                self._announce(described)
                return
        self.withdraw()

    def _announce(self, described: dict) -> None:
        now = time.time()
        info = {
            "name": self._name,
            "model_id": self._model_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self._started_at,
            "heartbeat_at": now,
            **described,
        }
        models_key = model_workers_key(self._model_id)
        with self._client.pipeline() as pipe:
            pipe.zadd(models_key, {self._name: now})
            pipe.zremrangebyscore(models_key, 0, now - 10 * self._ttl)  # forget long-dead workers
            pipe.set(worker_info_key(self._name), json.dumps(info), ex=math.ceil(self._ttl))
            pipe.execute()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("heartbeat to Redis failed: %s", exc)
            self._stop.wait(self._interval)
