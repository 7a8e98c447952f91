"""Where a model's files come from: a directory with only pickled weights is refused with a way out."""

from __future__ import annotations

import pytest

from worker.model_source import ModelLoadError, resolve_model_dir


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
