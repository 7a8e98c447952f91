"""`rerank-fleet up`: Redis (embedded unless given), one worker per visible GPU (else RERANK_CPU_WORKERS
CPU workers), the API and Flower, started as child processes, watched, and stopped together."""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
from pydantic import SecretStr

from api.cli.data_dir import DataDirLock, redis_dir
from api.cli.embedded_redis import start_embedded_redis
from api.cli.supervision import Child
from api.cli.fleet_models import ready_lines, worker_envs
from api.cli.flower import flower_command, flower_env, generated_credentials, write_login_file
from shared.log_format import redacted_url
from shared.settings import Settings, env_name

API_ONLY = ("RERANK_API_KEY", "RERANK_API_KEY_FILE")  # secrets the workers and Flower have no use for
STOP_MARGIN_SECONDS = 15.0  # beyond the API's own graceful shutdown (RERANK_REQUEST_TIMEOUT + 5 s)

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


def without(env: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {key: value for key, value in env.items() if key not in names}


def listen(host: str, port: int, what: str, flag: str) -> socket.socket:
    """A socket bound to `port` now (no SO_REUSEPORT), or one line naming the port and the flag to change it."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        raise RuntimeError(f"port {port} ({what}) on {host} is taken ({exc.strerror}): choose another with {flag}") from None


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
        self._data_dir = DataDirLock(settings.data_dir)
        self._stop_requested = False
        self._http_socket: socket.socket | None = None
        self._flower_login: str | None = None  # the file of generated credentials (0600), its path printed

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

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], **popen_kwargs) -> None:
        self.children.append(Child.spawn(name, argv, env=env, start_new_session=True, preexec_fn=_die_with_parent,
                                         **popen_kwargs))  # fmt: skip

    def _check_ports(self) -> None:
        """Bind HTTP now (the API inherits the socket), and check that gRPC and Flower are free, before
        anything starts: a taken port is one line, not a traceback deep in a child."""
        settings = self.settings
        self._http_socket = listen(settings.host, settings.port, "HTTP", "--port")
        for port, what, flag in ((settings.grpc_port, "gRPC", "--grpc-port (0: none)"),
                                 (settings.flower_port, "Flower", "--flower-port or --no-flower")):  # fmt: skip
            if port:
                listen(settings.host, port, what, flag).close()

    def _start(self) -> None:
        if self.settings.device == "cuda" and not visible_gpus("cuda"):
            raise RuntimeError("--device cuda, but no GPU is visible (CUDA_VISIBLE_DEVICES, nvidia-smi): use --device "
                               "cpu or auto")  # fmt: skip
        if not self.redis_url_given:
            self._data_dir.acquire()  # DataDirInUse (one line) if another `up` holds it
        self._check_ports()
        settings = self.settings
        if settings.flower_port and settings.flower_basic_auth is None and not os.environ.get("FLOWER_BASIC_AUTH"):
            login = generated_credentials()
            self._flower_login = write_login_file(login)
            settings = self.settings = settings.model_copy(update={"flower_basic_auth": SecretStr(login)})
        if not self.redis_url_given:
            popen_kwargs = {"start_new_session": True, "preexec_fn": _die_with_parent}
            data_dir = self._data_dir.path
            process, url = start_embedded_redis(
                str(redis_dir(data_dir)), max_memory_mb=settings.embedded_redis_maxmemory_mb, **popen_kwargs)  # fmt: skip
            self.children.append(Child("redis", process, **popen_kwargs))  # restarted on its port and directory
            settings = self.settings = settings.model_copy(update={"redis_url": url})
            log.info("started embedded Redis at %s, its data in %s", redacted_url(url), data_dir)
        env = without(settings_env(settings), ("RERANK_FLOWER_BASIC_AUTH",))
        service_env = without(env, API_ONLY)
        gpus = visible_gpus(settings.device)
        workers = worker_envs(settings, service_env, gpus, cpu_worker_envs)  # per model (api/cli/fleet_models.py)
        for name, worker_env in workers:
            self._spawn(name, [sys.executable, "-m", "worker"], worker_env)
        fd = self._http_socket.fileno()
        self._spawn("api", [sys.executable, "-m", "api", "--fd", str(fd)], env, pass_fds=(fd,))
        if settings.flower_port:
            self._spawn("flower", flower_command(settings), flower_env(settings, service_env))
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
            if self._flower_login:
                lines.append(f"  Flower login  in {self._flower_login}   (user:password, generated for this run, "
                             "readable by you only; RERANK_FLOWER_BASIC_AUTH=user:password sets your own)")  # fmt: skip
        lines.append(f"  Redis   {redacted_url(settings.redis_url)}")
        if not self.redis_url_given:
            lines.append(f"  Data    {self._data_dir.path}   (jobs and results; --data-dir or RERANK_DATA_DIR)")
        lines.append("Press Ctrl-C to stop.")
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
            deadline = time.monotonic() + self.settings.request_timeout + STOP_MARGIN_SECONDS
            for child in group:
                try:
                    child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in time; killing it", child.name)
                    child.process.kill()
                    child.process.wait()
        self._data_dir.release()
        if self._flower_login:
            shutil.rmtree(os.path.dirname(self._flower_login), ignore_errors=True)
        if self._http_socket is not None:
            self._http_socket.close()


def _client_host(host: str) -> str:
    """Where a local client reaches a server bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
