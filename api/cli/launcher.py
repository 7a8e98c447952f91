"""`rerank-fleet up`: Redis (embedded unless given), one worker per visible GPU (else RERANK_CPU_WORKERS
CPU workers), the API and Flower, started as child processes, watched, and stopped together."""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import httpx

from api.cli.embedded_redis import remove_data_dir, start_embedded_redis
from api.cli.supervision import Child
from api.cli.flower import flower_command, flower_env
from api.cli.fleet_models import ready_lines, worker_envs
from shared.settings import Settings, env_name

log = logging.getLogger("rerank-fleet")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Run in each child before exec: it gets SIGTERM if the launcher dies without stopping it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def visible_gpus(device: str) -> list[str]:
    """GPU ids to pin one worker each to: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    if device == "cpu":
        return []
    pinned = os.environ.get("CUDA_VISIBLE_DEVICES")
    if pinned is not None:
        return [gpu.strip() for gpu in pinned.split(",") if gpu.strip() and gpu.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listing.splitlines() if line.strip()]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that carries `settings` to a child process."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        key = env_name(name)
        if value is None:
            env.pop(key, None)
        elif hasattr(value, "get_secret_value"):
            env[key] = value.get_secret_value()
        else:
            env[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def cpu_worker_envs(env: dict[str, str], workers: int, torch_threads: int | None) -> list[dict[str, str]]:
    """The environments of `workers` CPU workers: RERANK_TORCH_THREADS each, or else the cores shared out.

    One worker keeps torch's own choice of threads. Several one-thread workers beat one worker of as many
    threads on the 2-core benchmark machine (ops/BENCHMARKS.md): a pass on one thread does not stall when
    the API or Redis takes a core.
    """
    cpu = {**env, "CUDA_VISIBLE_DEVICES": "", "RERANK_DEVICE": "cpu"}
    if torch_threads is None and workers > 1:
        cpu["RERANK_TORCH_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    return [dict(cpu) for _ in range(workers)]


class Fleet:
    """The processes of one `rerank-fleet up`."""

    def __init__(self, settings: Settings, *, redis_url_given: bool, ready_timeout: float = 600.0) -> None:
        self.settings = settings
        self.redis_url_given = redis_url_given
        self.ready_timeout = ready_timeout
        self.children: list[Child] = []
        self._redis_dir: str | None = None
        self._stop_requested = False

    def run(self) -> int:
        """Start everything, restart children that die, stop everything on Ctrl-C or SIGTERM."""
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        try:
            self._start()
            if not self._wait_ready():
                return 1
            self._print_ready()
            return self._watch()
        except RuntimeError as exc:
            print(f"rerank-fleet: {exc}", file=sys.stderr)
            return 1
        finally:
            self._stop_all()

    def _request_stop(self, signum, _frame) -> None:
        self._stop_requested = True

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.children.append(Child.spawn(name, argv, env=env, start_new_session=True, preexec_fn=_die_with_parent))

    def _start(self) -> None:
        settings = self.settings
        if not self.redis_url_given:
            popen_kwargs = {"start_new_session": True, "preexec_fn": _die_with_parent}
            process, url, self._redis_dir = start_embedded_redis(**popen_kwargs)
            self.children.append(Child("redis", process, **popen_kwargs))  # restarted on its port and directory
            settings = self.settings = settings.model_copy(update={"redis_url": url})
            log.info("started embedded Redis at %s", url)
        env = settings_env(settings)
        gpus = visible_gpus(settings.device)
        workers = worker_envs(settings, env, gpus, cpu_worker_envs)  # per model (api/cli/fleet_models.py)
        for name, worker_env in workers:
            self._spawn(name, [sys.executable, "-m", "worker"], worker_env)
        self._spawn(
            "api",
            [
                sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
                "--host", settings.host, "--port", str(settings.port),
                "--log-level", settings.log_level, "--timeout-graceful-shutdown", "10", "--no-access-log",
            ],
            env,
        )  # fmt: skip
        if settings.flower_port:
            self._spawn("flower", flower_command(settings), flower_env(settings, env))
        log.info("started %d worker(s) for %s (%s), the API%s", len(workers), ", ".join(settings.model_ids),
                 f"GPUs {','.join(gpus)}" if gpus else "CPU", " and Flower" if settings.flower_port else "")  # fmt: skip

    def _dead_child(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)

    def _wait_ready(self) -> bool:
        url = f"http://{_client_host(self.settings.host)}:{self.settings.port}/v1/health/ready"
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(timeout=2.0) as client:
            while not self._stop_requested:
                dead = self._dead_child()
                if dead is not None:
                    print(f"rerank-fleet: {dead.name} exited with code {dead.process.returncode} during start-up",
                          file=sys.stderr)  # fmt: skip
                    return False
                try:
                    if client.get(url).status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    print(f"rerank-fleet: not ready after {self.ready_timeout:g}s", file=sys.stderr)
                    return False
                time.sleep(0.25)
        return False

    def _print_ready(self) -> None:
        settings = self.settings
        host = _client_host(settings.host)
        base = f"http://{host}:{settings.port}"
        lines = ready_lines(settings, host)  # the models, HTTP and gRPC (api/cli/fleet_models.py)
        if settings.flower_port:
            lines.append(f"  Flower  http://{host}:{settings.flower_port}/   (workers and tasks; metrics: {base}/metrics)")
        lines += [f"  Redis   {settings.redis_url}", "Press Ctrl-C to stop."]
        print("\n".join(lines), flush=True)

    def _watch(self) -> int:
        while not self._stop_requested:
            for child in self.children:
                child.supervise()
            time.sleep(0.25)
        print("rerank-fleet: stopping", file=sys.stderr, flush=True)
        return 0

    def _stop_all(self) -> None:
        """SIGTERM the API and workers (they finish in-flight work), then Redis; SIGKILL stragglers."""
        services = [c for c in self.children if c.name != "redis"]
        backing = [c for c in self.children if c.name == "redis"]
        for group in (services, backing):
            for child in group:
                if child.process.poll() is None:
                    child.process.terminate()
            deadline = time.monotonic() + 20
            for child in group:
                try:
                    child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in time; killing it", child.name)
                    child.process.kill()
                    child.process.wait()
        if self._redis_dir:
            remove_data_dir(self._redis_dir)


def _client_host(host: str) -> str:
    """Where a local client reaches a server bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
