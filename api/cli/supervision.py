"""Children of `rerank-fleet up` restarted when they die, with exponential backoff.

Generic over the child list: Redis, workers, the API (and any child added later) are restarted alike,
with the command line and environment they were first started with.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

BACKOFF_FIRST = 1.0  # seconds before the first restart of a child
BACKOFF_MAX = 30.0  # the delay doubles with each quick death, up to this
STABLE_SECONDS = 60.0  # a child that ran this long starts again from BACKOFF_FIRST when it dies


class Child:
    """One supervised process: how to start it again, and when."""

    def __init__(self, name: str, process: subprocess.Popen, **popen_kwargs: Any) -> None:
        self.name = name
        self.process = process
        self.popen_kwargs = popen_kwargs  # env, session and pre-exec options it was started with
        self.restarts = 0
        self._quick_deaths = 0
        self._started_at = time.monotonic()
        self._restart_at: float | None = None

    @classmethod
    def spawn(cls, name: str, argv: list[str], **popen_kwargs: Any) -> "Child":
        return cls(name, subprocess.Popen(argv, **popen_kwargs), **popen_kwargs)

    def supervise(self, now: float | None = None) -> None:
        """Call often: schedules a restart when the process has died, and performs it when due."""
        now = time.monotonic() if now is None else now
        if self.process.poll() is None:
            return
        if self._restart_at is None:
            if now - self._started_at >= STABLE_SECONDS:
                self._quick_deaths = 0
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**self._quick_deaths)
            self._restart_at = now + delay
            print(f"rerank-fleet: {self.name} exited with code {self.process.returncode}; restarting it in {delay:g}s",
                  file=sys.stderr, flush=True)  # fmt: skip
        elif now >= self._restart_at:
            self.process = subprocess.Popen(self.process.args, **self.popen_kwargs)
            self.restarts += 1
            self._quick_deaths += 1
            self._started_at = now
            self._restart_at = None
            print(f"rerank-fleet: restarted {self.name} (pid {self.process.pid}, restart {self.restarts})",
                  file=sys.stderr, flush=True)  # fmt: skip
