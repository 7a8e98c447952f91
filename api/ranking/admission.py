"""Backpressure: a bounded number of interactive requests per model, over every API process.

Admitted requests are members of a Redis sorted set scored by their deadline (shared/task_keys.py).
One Lua call drops members whose deadline passed, counts the rest and adds the new one if there is
room, so API processes never over-admit and a crashed one cannot hold places past its requests' deadlines.
The Celery queue's length alone is not the backlog: workers reserve requests into their thread pools.
"""

from __future__ import annotations

import contextlib
import time
from typing import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.errors import ErrorType, RerankError
from shared.task_keys import admitted_key

OVERLOADED_RETRY_AFTER = 1  # seconds a refused client should wait: interactive requests take well under that

_ADMIT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class Admission:
    """Admits at most `limit` requests per model at a time, or refuses with OVERLOADED."""

    def __init__(self, redis: Redis, limit: int) -> None:
        self._redis = redis
        self._limit = limit
        self._admit = redis.register_script(_ADMIT)

    @contextlib.asynccontextmanager
    async def slot(self, model_id: str, task_id: str, deadline: float) -> AsyncIterator[None]:
        """Hold one place for `task_id` until its deadline or the end of the block."""
        key = admitted_key(model_id)
        now = time.time()
        admitted = await self._admit(keys=[key], args=[now, self._limit, deadline, task_id, int(deadline - now) + 60])
        if not admitted:
            raise RerankError(
                ErrorType.OVERLOADED,
                f"{self._limit} requests for model {model_id!r} are already queued; retry shortly",
                retry_after=OVERLOADED_RETRY_AFTER,
            )
        try:
            yield
        finally:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.zrem(key, task_id)
