"""Which device and dtype a worker runs the model on (RERANK_DEVICE, RERANK_DTYPE)."""

from __future__ import annotations

import torch

from shared.errors import ErrorType, RerankError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(setting: str) -> torch.device:
    """`auto` takes the first visible GPU (CUDA_VISIBLE_DEVICES pins it), else the CPU."""
    if setting == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", 0)
    if setting == "cuda":
        raise RerankError(ErrorType.UNAVAILABLE, "RERANK_DEVICE=cuda but no CUDA device is visible to this worker")
    return torch.device("cpu")


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    """`auto` is float32 on CPU, bfloat16 on GPUs that support it, else float16."""
    if setting != "auto":
        return _DTYPES[setting]
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a host tensor to `device`: on CUDA through pinned memory with a non-blocking copy, so the
    copy overlaps with queued work and the only synchronisation is reading the logits back."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)
