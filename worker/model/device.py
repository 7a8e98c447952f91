"""Which device and dtype a worker runs the model on (RERANK_DEVICE, RERANK_DTYPE)."""

from __future__ import annotations

import sys

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


GPU_BATCH_TOKENS = 16384
CPU_BATCH_TOKENS = 2048
GPU_SIZED_BATCH_GROWTH = 8  # passes sized by time (RERANK_GPU_FORWARD_MS) grow to at most 8x the token budget


def batch_tokens(setting: int | None, device: torch.device) -> int:
    """The micro-batcher's token budget: RERANK_MAX_BATCH_TOKENS, else the device's default.

    A GPU needs large batches to be busy. On a CPU, 2048 tokens already give the matmuls 2048 rows, and
    smaller batches of length-sorted pairs pad less (8 requests of 24 passages of 10-250 words: 94 % real
    tokens at 2048, 74 % at 16384).
    """
    if setting is not None:
        return setting
    return GPU_BATCH_TOKENS if device.type == "cuda" else CPU_BATCH_TOKENS


def pass_sizing(settings_ms: float, budget: int, device: torch.device) -> dict:
    """The micro-batcher's arguments for passes sized by time: on CUDA, about `settings_ms` a pass (0: none),
    at most GPU_SIZED_BATCH_GROWTH times `budget`; on a CPU none (the fixed budget, measured best there)."""
    if device.type != "cuda" or not settings_ms:
        return {}
    return {"forward_seconds": settings_ms / 1000, "max_sized_tokens": GPU_SIZED_BATCH_GROWTH * budget}


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a host tensor to `device`: on CUDA through pinned memory with a non-blocking copy, so the
    copy overlaps with queued work and the only synchronisation is reading the logits back."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


# A forward pass releases the GIL at every torch call. With Python's default 5 ms switch interval, a request
# thread busy in Python (decoding a task, building pairs) can keep it for up to 5 ms at each of the hundreds
# of calls of one pass, so a small model on a fast GPU waits on the GIL more than on the GPU (ops/BENCHMARKS.md,
# "GPU": a 512-pair MiniLM pass on an H100 took 12.7 ms alone and 3.6 s beside four busy Python threads).
GPU_SWITCH_INTERVAL_SECONDS = 0.0001


def favour_model_thread(device: torch.device) -> None:
    """On CUDA, shorten the interpreter's switch interval so the model thread gets the GIL back quickly."""
    if device.type == "cuda":
        sys.setswitchinterval(GPU_SWITCH_INTERVAL_SECONDS)
