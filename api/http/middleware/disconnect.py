"""Stop work for HTTP clients that left: their request is cancelled, and workers are told to skip it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Awaitable, TypeVar

from fastapi import Request

from shared.errors import ErrorType, RerankError

T = TypeVar("T")

POLL_SECONDS = 0.25


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first (see RankingService._run)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL_SECONDS)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                # nobody reads this answer; it ends the request without an error log
                raise RerankError(ErrorType.TIMEOUT, "the client disconnected before the answer")
    finally:
        if not task.done():
            task.cancel()
