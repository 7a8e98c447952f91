"""Container health check of a worker (`python -m worker.healthcheck`): exit 0 while a worker on this host
sends heartbeats to Redis, 1 otherwise.

It reads the registry the workers write (shared/registry.py), so it checks what the API relies on: the
worker is connected to Redis, has loaded its model and is consuming. It imports neither torch nor Celery.
"""

from __future__ import annotations

import json
import socket
import sys
import time

import redis

from shared.registry import WORKER_PREFIX
from shared.settings import get_settings


def live_local_workers(client: redis.Redis, host: str, ttl: float) -> list[str]:
    """Names of the workers on `host` whose last heartbeat is younger than `ttl` seconds."""
    names = []
    for key in client.scan_iter(match=f"{WORKER_PREFIX}*", count=100):
        raw = client.get(key)
        info = json.loads(raw) if raw else {}
        if info.get("host") == host and info.get("heartbeat_at", 0) > time.time() - ttl:
            names.append(info.get("name", ""))
    return names


def main() -> int:
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        workers = live_local_workers(client, socket.gethostname(), settings.worker_ttl)
    except redis.RedisError as exc:
        print(f"unhealthy: Redis unreachable: {exc}", file=sys.stderr)
        return 1
    if not workers:
        print(f"unhealthy: no worker on {socket.gethostname()} has sent a heartbeat", file=sys.stderr)
        return 1
    print("healthy:", ", ".join(workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
