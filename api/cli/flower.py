"""Flower for a fleet: the Celery app it watches and the command that starts it.

    python -m api.cli.flower      # Flower for the RERANK_* settings (the compose `flower` service runs this)

`rerank-fleet up` starts the same command (`flower_command`) as one of its children.

The app is the shared Celery configuration on `RERANK_REDIS_URL` (no torch, no worker code). Workers send
task events (shared/celery_app.py), so Flower lists each worker by its node name (model, GPU, pid) and each
task with its argsrepr: model and passage count, never texts. Flower reads its own options from `FLOWER_*`
environment variables too: basic auth goes there (`FLOWER_BASIC_AUTH`), never on a command line.
"""

from __future__ import annotations

import os
import sys

from shared.celery_app import create_celery_app
from shared.settings import Settings, get_settings

# Workers get a new node name when they restart (the pid is part of it): forget offline ones after an hour.
PURGE_OFFLINE_WORKERS_SECONDS = 3600

app = create_celery_app(get_settings(), result_backend=False)


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
    """`env` with Flower's basic auth from RERANK_FLOWER_BASIC_AUTH, if set (else FLOWER_BASIC_AUTH passes through)."""
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
