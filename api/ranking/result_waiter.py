"""Waiting for workers' results without a thread per request.

Celery's Redis result backend writes each result to `celery-task-meta-<task id>` and publishes it on a
channel of the same name. One pub/sub connection per API process subscribes to the channels of the
requests in flight and wakes each waiting coroutine. A GET of the key every `poll_interval` covers a
result published before its subscription took effect, or lost while the connection was re-established.
Deleting a delivered result and unsubscribing from its channel happen beside the answer, not before it:
two Redis round trips a request's client need not wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import AsyncIterator, Awaitable, Callable, Coroutine

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RESULT_KEY_PREFIX = "celery-task-meta-"  # Celery's key (and channel) for a task's result
_IDLE_CHANNEL = "rerank:api:idle"  # keeps the pub/sub connection subscribed while nothing is in flight


class ResultWaiter:
    """Delivers Celery task results to the coroutines waiting for them."""

    def __init__(self, redis: Redis, *, poll_interval: float = 1.0) -> None:
        self._redis = redis
        self._pubsub = redis.pubsub()
        self._waiting: dict[str, asyncio.Future] = {}
        self._subscribe_lock = asyncio.Lock()
        self._poll_interval = poll_interval
        self._reader: asyncio.Task | None = None
        self._cleanups: set[asyncio.Task] = set()  # deletes and unsubscribes still running

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_forever(), name="result-waiter")

    async def close(self) -> None:
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(RedisError, RuntimeError):
            await self._pubsub.aclose()

    @contextlib.asynccontextmanager
    async def expect(self, task_id: str) -> AsyncIterator["PendingResult"]:
        """Subscribe to a task's result before it is sent; unsubscribe when done."""
        channel = RESULT_KEY_PREFIX + task_id
        future = asyncio.get_running_loop().create_future()
        self._waiting[channel] = future
        try:
            async with self._subscribe_lock:
                await self._pubsub.subscribe(channel)
            yield PendingResult(self, channel, future)
        finally:
            self._waiting.pop(channel, None)
            self._beside_the_answer(self._unsubscribe(channel))

    def _beside_the_answer(self, cleanup: Coroutine) -> None:
        """Run `cleanup` without making the request wait for it; `close` waits for what is left."""
        task = asyncio.get_running_loop().create_task(cleanup)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _unsubscribe(self, channel: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            async with self._subscribe_lock:
                await self._pubsub.unsubscribe(channel)

    async def _fetch(self, channel: str) -> dict | None:
        raw = await self._redis.get(channel)
        return json.loads(raw) if raw else None

    async def _forget(self, channel: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._redis.delete(channel)

    async def _read_forever(self) -> None:
        while True:
            try:
                if not self._pubsub.subscribed:
                    async with self._subscribe_lock:
                        await self._pubsub.subscribe(_IDLE_CHANNEL)
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("result subscription lost (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            if not message or message.get("type") != "message":
                continue
            channel = message["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else channel
            future = self._waiting.get(channel)
            if future is not None and not future.done():
                try:
                    future.set_result(json.loads(message["data"]))
                except ValueError:
                    log.error("unreadable result on %s", channel)


class PendingResult:
    """One task's result on its way."""

    def __init__(self, waiter: ResultWaiter, channel: str, future: asyncio.Future) -> None:
        self._waiter = waiter
        self._channel = channel
        self._future = future

    async def get(self, timeout: float, check: Callable[[], Awaitable[None]] | None = None) -> dict | None:
        """The task's Celery result record, or None if none came within `timeout` seconds.

        `check` runs at every poll while no result has come; it may raise to stop waiting (a lost worker).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        meta = None
        while meta is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                meta = await asyncio.wait_for(asyncio.shield(self._future), min(remaining, self._waiter._poll_interval))
            except asyncio.TimeoutError:
                meta = await self._waiter._fetch(self._channel)
                if meta is None and check is not None:
                    await check()
        self._waiter._beside_the_answer(self._waiter._forget(self._channel))
        return meta
