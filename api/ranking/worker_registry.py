"""Which models live workers serve, read from the registry the workers write (shared/registry.py)."""

from __future__ import annotations

import json
import time

from redis.asyncio import Redis

from shared.registry import MODELS_PREFIX, TAKES_INSTRUCTION_FIELD, model_workers_key, worker_info_key


SERVED_MODELS_CACHE_SECONDS = 1.0  # listing the models SCANs the keyspace: at most once a second per API process


class WorkerRegistry:
    """Reads worker heartbeats; a worker is live while its last heartbeat is younger than `ttl`."""

    def __init__(self, redis: Redis, ttl: float) -> None:
        self._redis = redis
        self._ttl = ttl
        self._served: tuple[float, list[str]] | None = None  # (read at, models)

    async def ping(self) -> None:
        """Raise if Redis does not answer."""
        await self._redis.ping()

    async def live_workers(self, model_id: str) -> list[str]:
        """Names of the workers that serve `model_id` now."""
        members = await self._redis.zrangebyscore(model_workers_key(model_id), time.time() - self._ttl, "+inf")
        return [m.decode() if isinstance(m, bytes) else m for m in members]

    async def is_live(self, model_id: str, worker_name: str) -> bool:
        """Whether `worker_name` has sent a heartbeat for `model_id` within the last `ttl` seconds."""
        last = await self._redis.zscore(model_workers_key(model_id), worker_name)
        return last is not None and last > time.time() - self._ttl

    async def served_models(self) -> list[str]:
        """Ids of every model with at least one live worker, as read within the last second."""
        now = time.monotonic()
        if self._served is None or now - self._served[0] > SERVED_MODELS_CACHE_SECONDS:
            self._served = (now, await self._read_served_models())
        return list(self._served[1])

    async def _read_served_models(self) -> list[str]:
        models = []
        async for key in self._redis.scan_iter(match=f"{MODELS_PREFIX}*", count=100):
            model_id = (key.decode() if isinstance(key, bytes) else key)[len(MODELS_PREFIX) :]
            if await self.live_workers(model_id):
                models.append(model_id)
        return sorted(models)

    async def takes_instruction(self, model_id: str) -> bool:
        """Whether `model_id`'s prompt takes an `instruction`, as its live workers announce (TAKES_INSTRUCTION_FIELD):
        False only when one says so and none says otherwise (a worker that says nothing leaves it to the worker)."""
        names = await self.live_workers(model_id)
        raws = await self._redis.mget([worker_info_key(name) for name in names]) if names else []
        infos = [json.loads(raw) for raw in raws if raw]
        said = [info[TAKES_INSTRUCTION_FIELD] for info in infos if isinstance(info.get(TAKES_INSTRUCTION_FIELD), bool)]
        return not said or any(said)

    async def worker_info(self, worker_name: str) -> dict | None:
        """What a worker last reported about itself (device, token limit, batch statistics)."""
        raw = await self._redis.get(worker_info_key(worker_name))
        return json.loads(raw) if raw else None
