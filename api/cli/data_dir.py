"""The data directory of `rerank-fleet up`: where its embedded Redis keeps its append-only file.

`RERANK_DATA_DIR` or `--data-dir`, else $XDG_DATA_HOME/rerank-fleet, else ~/.local/share/rerank-fleet; created
mode 0700. One `up` at a time holds it: `up.lock` in it is locked (flock) for the life of the launcher, so
that two Redis servers never write one append-only file; the kernel drops the lock when the launcher exits,
however it ends.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "up.lock"


class DataDirInUse(RuntimeError):
    """Another `rerank-fleet up` holds the data directory."""


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "rerank-fleet"


def redis_dir(data_dir: Path) -> Path:
    """Where the embedded Redis runs (its configuration and append-only file)."""
    return data_dir / "redis"


class DataDirLock:
    """The data directory, created 0700 and held by this process until `release` (or its exit)."""

    def __init__(self, data_dir: str | None) -> None:
        self.path = Path(data_dir).expanduser() if data_dir else default_data_dir()
        self._fd: int | None = None

    def acquire(self) -> Path:
        """Create the directory (0700) and lock it; DataDirInUse, naming it, if another `up` holds it."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        redis_dir(self.path).mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise DataDirInUse(f"the data directory {self.path} is in use by another rerank-fleet up"
                               f"{f' (pid {holder})' if holder.isdigit() else ''}; stop it, or give "
                               "--data-dir / RERANK_DATA_DIR another directory") from None  # fmt: skip
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self.path

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None
