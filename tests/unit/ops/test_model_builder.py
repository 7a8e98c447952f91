"""The model builder's command line: the directory it writes is readable by a worker running as another user."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_every_file_the_builder_writes_is_readable_by_other_users(tmp_path: Path) -> None:
    """A container's worker (uid 10001) reads a model the builder wrote as another user: no 0600 file."""
    out = tmp_path / "model"
    subprocess.run([sys.executable, "-m", "ops.models.builder", "bert", str(out)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in out.iterdir()}
    assert "model.safetensors" in modes
    unreadable = {name: oct(mode) for name, mode in modes.items() if not mode & stat.S_IROTH}
    assert not unreadable, f"not readable by other users: {unreadable}"
