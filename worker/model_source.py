"""Where a model's files come from: a local directory, the Hugging Face cache, or one download from the hub.

A hub id is resolved to a local snapshot before anything is loaded, so that a machine without network
fails at once with a message saying how to pass a local directory, instead of retrying for a minute.
"""

from __future__ import annotations

import logging
import os
import socket
from urllib.parse import urlparse

from huggingface_hub import constants, snapshot_download

# Configuration, tokenizer and safetensors weights; never pickled (.bin/.pt) weights.
_ALLOWED_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]
_REMOTE_CODE_FILES = ["*.py"]


log = logging.getLogger(__name__)


class ModelLoadError(Exception):
    """The model could not be found or loaded; the message says what to do."""


def from_pretrained(auto_class, model_dir: str, **kwargs):
    """`auto_class.from_pretrained` from safetensors, with torch's fused SDPA attention, or the architecture's
    own where it has none."""
    try:
        return auto_class.from_pretrained(model_dir, attn_implementation="sdpa", use_safetensors=True, **kwargs)
    except ValueError as exc:
        if "attention" not in str(exc).lower():
            raise
        log.info("this architecture has no SDPA attention; using its default")
        return auto_class.from_pretrained(model_dir, use_safetensors=True, **kwargs)


def require_safetensors(model_dir: str, source: str) -> None:
    """Refuse a model whose weights are only pickled (`pytorch_model.bin`, `*.pt`), saying how to convert them."""
    names = os.listdir(model_dir)
    if any(name.endswith(".safetensors") for name in names):
        return
    pickled = sorted(name for name in names if name.endswith((".bin", ".pt", ".pth", ".ckpt")))
    if pickled:
        raise ModelLoadError(
            f"model {source!r} has only pickled weights ({', '.join(pickled[:3])}); only safetensors load, since "
            "pickle can run code. Convert it once where you trust the file: python -c \"from transformers import "
            f"AutoModelForSequenceClassification as M; M.from_pretrained('{model_dir}').save_pretrained('{model_dir}', "
            "safe_serialization=True)\""
        )


def require_readable(model_dir: str) -> None:
    """Refuse a model directory this process may not read, naming the file, its mode and owner, and our uid.

    Without this, a file the worker's user cannot read (a container's uid against files written 0600 by
    another) surfaces from transformers as a misleading "No such file or directory"."""
    unreadable = [model_dir] if not os.access(model_dir, os.R_OK | os.X_OK) else []
    if not unreadable:
        for entry in os.scandir(model_dir):
            if entry.is_file() and not os.access(entry.path, os.R_OK):
                unreadable.append(entry.path)
    if unreadable:
        info = os.stat(unreadable[0])
        raise ModelLoadError(
            f"permission denied: {unreadable[0]!r} (mode {info.st_mode & 0o777:04o}, owner uid {info.st_uid}"
            f"{f', and {len(unreadable) - 1} more' if len(unreadable) > 1 else ''}) cannot be read by this worker's "
            f"uid {os.getuid()}; make the model readable to it, e.g. chmod -R a+rX {model_dir}"
        )


def resolve_model_dir(source: str, *, trust_remote_code: bool = False, revision: str | None = None) -> str:
    """A local directory holding the model named by `source` (a directory, or a hub id at `revision`)."""
    if os.path.isdir(source):
        require_readable(source)
        if not os.path.isfile(os.path.join(source, "config.json")):
            raise ModelLoadError(f"{source!r} is a directory but holds no config.json: not a Hugging Face model")
        require_safetensors(source, source)
        return source
    if source.startswith((".", "/", "~")):
        raise ModelLoadError(f"model directory {source!r} does not exist")
    patterns = _ALLOWED_FILES + (_REMOTE_CODE_FILES if trust_remote_code else [])
    try:
        return snapshot_download(source, revision=revision, allow_patterns=patterns, local_files_only=True)
    except Exception:  # not in the cache: fall through to a download
        pass
    hint = (
        f"model {source!r} is not in the Hugging Face cache and cannot be downloaded: {{why}}. "
        "Download it where there is network (e.g. `hf download "
        f"{source} --local-dir DIR`) and pass the directory: RERANK_MODEL=DIR or `rerank-fleet up --model DIR`"
    )
    if constants.HF_HUB_OFFLINE:
        raise ModelLoadError(hint.format(why="HF_HUB_OFFLINE is set"))
    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=5).close()
    except OSError as exc:
        raise ModelLoadError(hint.format(why=f"{endpoint.hostname} is unreachable ({exc})")) from None
    try:
        return snapshot_download(source, revision=revision, allow_patterns=patterns)
    except Exception as exc:
        raise ModelLoadError(hint.format(why=_first_line(exc))) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
