"""Watching a request a worker is scoring: did its worker die, and telling workers that its client left.

Workers write which of them took a task, and skip tasks marked cancelled (keys in shared/task_keys.py).
"""

from __future__ import annotations

import contextlib

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.ranking.worker_registry import WorkerRegistry
from shared.task_keys import TASK_KEY_TTL_SLACK, task_cancelled_key, task_worker_key


class TaskWatch:
    """Reads task owners against worker heartbeats; marks abandoned tasks."""

    def __init__(self, redis: Redis, registry: WorkerRegistry) -> None:
        self._redis = redis
        self._registry = registry

    async def lost_worker(self, task_id: str, model_id: str) -> str | None:
        """The worker that took `task_id` if its heartbeat has stopped; None while it lives or none took it."""
        owner = await self._redis.get(task_worker_key(task_id))
        if owner is None:
            return None
        owner = owner.decode() if isinstance(owner, bytes) else owner
        return None if await self._registry.is_live(model_id, owner) else owner

    async def cancel(self, task_id: str, seconds_left: float) -> None:
        """Tell workers nobody waits for `task_id` any more (best effort: Redis may be the reason we stop)."""
        with contextlib.suppress(RedisError, OSError):
            await self._redis.set(task_cancelled_key(task_id), 1, ex=max(1, int(seconds_left)) + TASK_KEY_TTL_SLACK)
