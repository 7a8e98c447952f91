"""Where a model's files come from: a directory with only pickled weights is refused with a way out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from worker.model_source import ModelLoadError, resolve_model_dir

ROOT = Path(__file__).resolve().parents[3]


def test_a_directory_with_only_pickled_weights_says_how_to_convert(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ModelLoadError) as refused:
        resolve_model_dir(str(tmp_path))
    message = str(refused.value)
    assert "pytorch_model.bin" in message and "safetensors" in message and "save_pretrained" in message


def test_a_directory_with_safetensors_is_taken(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    assert resolve_model_dir(str(tmp_path)) == str(tmp_path)


def _resolve_as_another_user(model_dir) -> subprocess.CompletedProcess:
    """resolve_model_dir(model_dir) in a process of a uid that does not own the files (root reads anything:
    as root the process drops to nobody, as a container's worker runs as its own uid)."""
    command = [sys.executable, "-c", f"from worker.model_source import resolve_model_dir; resolve_model_dir({str(model_dir)!r})"]
    if os.getuid() == 0:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)


@pytest.mark.skipif(os.getuid() == 0 and shutil.which("setpriv") is None, reason="as root, needs setpriv to drop to nobody")
def test_a_model_file_the_worker_may_not_read_is_a_permission_error_naming_it():
    """A weights file written 0600 by another user: 'permission denied' with the file, its mode and the fix,
    never a 'No such file or directory' that sends the user looking for a missing file."""
    model_dir = Path(tempfile.mkdtemp(prefix="model-source-"))
    try:
        model_dir.chmod(0o755)
        (model_dir / "config.json").write_text("{}")
        (model_dir / "config.json").chmod(0o644)
        (model_dir / "model.safetensors").write_bytes(b"")
        (model_dir / "model.safetensors").chmod(0o600)
        if os.getuid() != 0:
            (model_dir / "model.safetensors").chmod(0o000)
        result = _resolve_as_another_user(model_dir)
        assert result.returncode != 0
        last_line = result.stderr.strip().splitlines()[-1]
        assert "ModelLoadError: permission denied" in last_line, result.stderr
        assert "model.safetensors" in last_line and "chmod -R a+rX" in last_line
        assert "No such file" not in result.stderr
    finally:
        shutil.rmtree(model_dir)
