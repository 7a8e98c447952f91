"""`python -m worker.healthcheck`, the worker containers' health check: healthy while a worker of this host
sends heartbeats to Redis."""

from __future__ import annotations

import subprocess
import sys

from api.cli.embedded_redis import free_port
from tests.processes import REPO_ROOT, child_env, start_redis


def _check(redis_url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worker.healthcheck"], env=child_env(redis_url=redis_url),
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)  # fmt: skip


def test_healthy_while_this_hosts_worker_beats(bert_stack) -> None:
    result = _check(bert_stack.redis_url)
    assert result.returncode == 0, result.stderr
    assert bert_stack.worker.extra["name"] in result.stdout


def test_unhealthy_without_a_worker_or_without_redis(log_dir) -> None:
    empty = start_redis(log_dir)
    try:
        result = _check(empty.extra["url"])
        assert result.returncode == 1 and "no worker on" in result.stderr
    finally:
        empty.stop()
    result = _check(f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 1 and "Redis unreachable" in result.stderr
