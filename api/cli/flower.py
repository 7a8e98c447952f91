"""Flower for a fleet: the Celery app it watches and the command that starts it.

    python -m api.cli.flower      # Flower for the RERANK_* settings (the compose `flower` service runs this)

`rerank-fleet up` starts the same command (`flower_command`) as one of its children.

The app is the shared Celery configuration on `RERANK_REDIS_URL` (no torch, no worker code). Workers send
task events (shared/celery_app.py), so Flower lists each worker by its node name (model, GPU, pid) and each
task with its argsrepr: model and passage count, never texts. Flower reads its own options from `FLOWER_*`
environment variables too: basic auth goes there (`FLOWER_BASIC_AUTH`), never on a command line.
Flower's own `/metrics` answers without its credentials; this module makes it ask for them, like every
other page but `/healthcheck` (container probes).
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile

from shared.celery_app import create_celery_app
from shared.settings import Settings, get_settings

# Workers get a new node name when they restart (the pid is part of it): forget offline ones after an hour.
PURGE_OFFLINE_WORKERS_SECONDS = 3600

app = create_celery_app(get_settings(), result_backend=False)

GENERATED_USER = "rerank"


def _metrics_need_credentials() -> None:
    """Flower's Prometheus page behind the same basic auth as its other pages (in the Flower process)."""
    try:
        import tornado.web
        from flower.views import monitor
    except ImportError:  # not a Flower process (no flower installed): nothing to guard
        return
    if not getattr(monitor.Metrics.get, "_rerank_guarded", False):
        monitor.Metrics.get = tornado.web.authenticated(monitor.Metrics.get)
        monitor.Metrics.get._rerank_guarded = True


_metrics_need_credentials()


def generated_credentials() -> str:
    """`user:password` for a Flower that would otherwise be open (rerank-fleet up writes them to a file)."""
    return f"{GENERATED_USER}:{secrets.token_urlsafe(18)}"


def write_login_file(login: str) -> str:
    """Write generated `user:password` to a file only this user can read (mode 0600, in a private directory,
    which `up` removes when it stops); its path, which `up` prints instead of the password."""
    path = os.path.join(tempfile.mkdtemp(prefix="rerank-fleet-flower-"), "flower-login")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(login + "\n")
    return path


def flower_command(settings: Settings) -> list[str]:
    """argv of a Flower process for `settings` (port, address, persistence; auth travels in flower_env)."""
    argv = [
        sys.executable, "-m", "celery", "--app", "api.cli.flower:app", "flower",
        f"--port={settings.flower_port}", f"--address={settings.host}",
        f"--purge_offline_workers={PURGE_OFFLINE_WORKERS_SECONDS}",
    ]  # fmt: skip
    if settings.flower_db:
        argv += ["--persistent=True", f"--db={settings.flower_db}", "--state_save_interval=60000"]
    return argv


def flower_env(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """`env` with Flower's basic auth from RERANK_FLOWER_BASIC_AUTH, if set (else FLOWER_BASIC_AUTH passes through),
    without the API key, which Flower has no use for."""
    env = {k: v for k, v in env.items() if k not in ("RERANK_API_KEY", "RERANK_API_KEY_FILE")}
    if settings.flower_basic_auth is None:
        return env
    return {**env, "FLOWER_BASIC_AUTH": settings.flower_basic_auth.get_secret_value()}


def main() -> None:
    """Replace this process with Flower for the RERANK_* settings (the compose `flower` service runs this)."""
    settings = get_settings()
    argv = flower_command(settings)
    os.execve(argv[0], argv, flower_env(settings, dict(os.environ)))


if __name__ == "__main__":
    main()
