"""Real processes for full-stack tests and the drills: redis-server, Celery workers (`python -m worker`), uvicorn and Flower."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from api.cli.embedded_redis import free_port, redis_command, wait_for_redis
from api.cli.flower import flower_command, flower_env
from shared.registry import model_workers_key, worker_info_key
from shared.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Proc:
    name: str
    process: subprocess.Popen
    log_path: Path
    extra: dict = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def child_env(repo: Path = REPO_ROOT, **rerank_settings) -> dict[str, str]:
    """This environment plus RERANK_* settings, with offline hubs, fast heartbeats and a fresh data directory,
    running the code of `repo` (this checkout unless a benchmark compares another one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANK_")}
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")  # a hung one dumps stacks on SIGABRT
    env.setdefault("TOKENIZERS_PARALLELISM", "false")  # small test machines; a benchmark may turn it on
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    env.setdefault("RERANK_HEARTBEAT_INTERVAL", "0.5")
    # a `rerank-fleet up` of its own data directory (created by `up` only): runs side by side never share one
    env.setdefault("RERANK_DATA_DIR", os.path.join(tempfile.gettempdir(), f"rerank-fleet-data-{uuid.uuid4().hex}"))
    for name, value in rerank_settings.items():
        env[f"RERANK_{name.upper()}"] = str(value)
    return env


def _spawn(name: str, argv: list[str], env: dict, log_dir: Path, repo: Path = REPO_ROOT) -> Proc:
    log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
    handle = open(log_path, "wb")
    process = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=repo)
    handle.close()
    return Proc(name, process, log_path)


def start_redis(log_dir: Path, *, port: int | None = None, appendonly: bool = False) -> Proc:
    """A redis-server on loopback; with `appendonly`, its data survives a restart (AOF, fsync every second)."""
    port = port or free_port()
    argv = redis_command(port, str(log_dir))
    if appendonly:
        argv += ["--appendonly", "yes", "--appendfilename", f"redis-{port}.aof"]
    proc = _spawn("redis", argv, dict(os.environ), log_dir)
    proc.extra.update(url=f"redis://127.0.0.1:{port}/0", port=port, appendonly=appendonly, log_dir=log_dir)
    wait_for_redis(proc.extra["url"], proc.process)
    return proc


def restart_redis(proc: Proc) -> Proc:
    """Start Redis again on the port (and AOF data) of `proc`, which must have stopped."""
    return start_redis(proc.extra["log_dir"], port=proc.extra["port"], appendonly=proc.extra["appendonly"])


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of a live process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_worker(
    log_dir: Path, *, redis_url: str, model: str, model_id: str, timeout: float = 120, device: str = "cpu",
    repo: Path = REPO_ROOT, **settings,
) -> Proc:
    """A worker process (on the CPU unless `device` says otherwise); returns once it has announced itself."""
    env = child_env(repo, redis_url=redis_url, model=model, model_id=model_id, device=device, **settings)
    proc = _spawn("worker", [sys.executable, "-m", "worker"], env, log_dir, repo)
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    known = set(client.zrange(model_workers_key(model_id), 0, -1))
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.process.returncode}:\n{proc.log()[-3000:]}")
        fresh = set(client.zrange(model_workers_key(model_id), 0, -1)) - known
        if fresh:
            proc.extra["name"] = fresh.pop().decode()
            return proc
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"worker did not register within {timeout}s:\n{proc.log()[-3000:]}")


def start_api(log_dir: Path, *, redis_url: str, timeout: float = 60, repo: Path = REPO_ROOT, **settings) -> Proc:
    """The API process (`python -m api`: HTTP and gRPC); returns once /v1/health/live answers.

    A checkout from before `python -m api` existed (a benchmark's baseline) is served by uvicorn directly."""
    port = free_port()
    settings.setdefault("grpc_port", free_port())
    env = child_env(repo, redis_url=redis_url, host="127.0.0.1", port=port, **settings)
    argv = [sys.executable, "-m", "api"]
    if not (repo / "api" / "__main__.py").exists():
        argv = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning"]  # fmt: skip
    proc = _spawn("api", argv, env, log_dir, repo)
    proc.extra["url"] = f"http://127.0.0.1:{port}"
    proc.extra["grpc"] = f"127.0.0.1:{settings['grpc_port']}"
    return _when_answering(proc, "API", proc.extra["url"] + "/v1/health/live", timeout)


def start_flower(log_dir: Path, *, redis_url: str, basic_auth: str | None = None, timeout: float = 60) -> Proc:
    """Flower (api/cli/flower.py) on a free port; returns once /healthcheck answers."""
    port = free_port()
    settings = Settings(redis_url=redis_url, flower_port=port, host="127.0.0.1", flower_basic_auth=basic_auth)
    proc = _spawn("flower", flower_command(settings), flower_env(settings, child_env(redis_url=redis_url)), log_dir)
    proc.extra["url"] = f"http://127.0.0.1:{port}"
    return _when_answering(proc, "Flower", proc.extra["url"] + "/healthcheck", timeout)


def _when_answering(proc: Proc, what: str, url: str, timeout: float) -> Proc:
    """`proc` once `url` answers 200; stopped, and an error with its log, if it exits or times out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.process.returncode}:\n{proc.log()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"{what} did not come up within {timeout}s:\n{proc.log()[-3000:]}")


@contextlib.contextmanager
def silent_worker(redis_url: str, model_id: str):
    """A worker announced in the registry that consumes nothing: requests for its model wait forever."""
    client = redis.Redis.from_url(redis_url)
    client.zadd(model_workers_key(model_id), {"silent@host": time.time() + 3600})
    try:
        yield
    finally:
        client.delete(model_workers_key(model_id))


def worker_report(redis_url: str, worker_name: str, timeout: float = 10) -> dict:
    """What a worker writes about itself in the registry (batch statistics included), in a heartbeat
    written after this call began, so that it counts everything finished before the call."""
    client = redis.Redis.from_url(redis_url)
    asked_at = time.time()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = client.get(worker_info_key(worker_name))
        report = json.loads(raw) if raw else {}
        if report.get("heartbeat_at", 0) > asked_at:
            return report
        time.sleep(0.1)
    raise AssertionError(f"worker {worker_name} sent no heartbeat within {timeout}s")
