"""Watching a request a worker is scoring: did its worker die, and telling workers that its client left.

Workers write which of them took a task the moment they receive it, and skip tasks marked cancelled (keys in
shared/task_keys.py). A worker killed between popping a message and recording it leaves no owner: such a
task has *vanished* once no owner is recorded and its queue no longer holds it. Queues are FIFO lists of
kombu messages and task ids begin with their send time (`task_id`), so the queue no longer holds a task
when it is empty or its oldest message was sent after it; a Lua script reads that oldest message's id
from the message's end (its headers), without sending the message (passages and all) over the wire.
"""

from __future__ import annotations

import contextlib
import time
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.ranking.worker_registry import WorkerRegistry
from shared.task_keys import TASK_KEY_TTL_SLACK, task_cancelled_key, task_worker_key


CLOCK_SKEW_NS = 500_000_000  # senders' clocks may differ by this much (several API processes)

# KEYS: queue, owner key. ARGV: the task id's send-time prefix plus CLOCK_SKEW_NS. 1: vanished.
_VANISHED = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local oldest = redis.call('LINDEX', KEYS[1], -1)
if not oldest then return 1 end
local _, found = string.find(oldest, '"id": "', math.max(1, #oldest - 8192), true)
if not found then return 0 end
if string.sub(oldest, found + 1, found + 16) > ARGV[1] then return 1 end
return 0
"""


def task_id(sent_ns: int | None = None) -> str:
    """A task id that sorts by send time: 16 hex digits of nanoseconds, then 16 random ones."""
    return f"{sent_ns or time.time_ns():016x}{uuid.uuid4().hex[:16]}"


class TaskWatch:
    """Reads task owners against worker heartbeats; marks abandoned tasks."""

    def __init__(self, redis: Redis, registry: WorkerRegistry) -> None:
        self._redis = redis
        self._registry = registry
        self._vanished = redis.register_script(_VANISHED)

    async def vanished(self, task_id: str, queue: str) -> bool:
        """Whether no worker has claimed `task_id` although its queue no longer holds it (its taker died)."""
        sent_ns = int(task_id[:16], 16)
        return bool(await self._vanished(keys=[queue, task_worker_key(task_id)], args=[f"{sent_ns + CLOCK_SKEW_NS:016x}"]))

    async def owner(self, task_id: str) -> str | None:
        """The worker that took `task_id`, if one has."""
        owner = await self._redis.get(task_worker_key(task_id))
        return owner.decode() if isinstance(owner, bytes) else owner

    async def lost_worker(self, task_id: str, model_id: str) -> str | None:
        """The worker that took `task_id` if its heartbeat has stopped; None while it lives or none took it."""
        owner = await self.owner(task_id)
        if owner is None:
            return None
        return None if await self._registry.is_live(model_id, owner) else owner

    async def cancel(self, task_id: str, seconds_left: float) -> None:
        """Tell workers nobody waits for `task_id` any more (best effort: Redis may be the reason we stop)."""
        with contextlib.suppress(RedisError, OSError):
            await self._redis.set(task_cancelled_key(task_id), 1, ex=max(1, int(seconds_left)) + TASK_KEY_TTL_SLACK)
