"""Attention masks decided on the host from the pairs' lengths, so that a forward pass never reads the device.

Given a 2-D padding mask, transformers' masking utilities first ask whether the mask can be skipped
(`padding_mask.all()`; for a decoder without a mask, whether the positions are packed): on CUDA each of those
is a device-to-host read that waits for every queued pass to finish, so the engine could not queue the next
pass while the last one runs. The lengths are on the host already, so the decision is made here: no mask
when every pair of an encoder's batch has one length, else an additive [pairs, 1, 1, longest] key mask
(0 where a key is a real token, the dtype's minimum where it is padding), for a causal model combined with
its triangle ([pairs, 1, longest, longest]) and for sliding-window layers with their window. transformers
takes a 4-D mask as it is. The masks are built on the device from the lengths, in queued operations only.
The runtime uses them on CUDA (worker/model/runtime.py, `host_masks`); a CPU has nothing to wait for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

# Masks that a model's layers take, by layer type (ModernBERT, Gemma-2/3, Qwen-2/3 with sliding windows): the
# model accepts a mapping from its config's `layer_types` to masks
_FULL, _SLIDING = "full_attention", "sliding_attention"


@dataclass(frozen=True, slots=True)
class HostMasks:
    """How a model's attention is masked: causal or bidirectional, with or without a sliding window."""

    causal: bool
    window: int | None  # sliding-window layers' reach, as the config gives it (causal: keys within `window - 1`
    # before the query; bidirectional: within `window` either side), or None
    by_layer_type: bool  # the model takes a {layer type: mask} mapping (its layers differ)
    dtype: torch.dtype

    @classmethod
    def of(cls, model: torch.nn.Module) -> "HostMasks":
        """The masking of `model` (a classifier, or a TokenLogits scorer's decoder), read from its config and modules."""
        config = model.config
        causal = getattr(config, "is_causal", True) is not False and any(
            getattr(module, "is_causal", False) is True for module in model.modules()
        )
        layer_types = set(getattr(config, "layer_types", None) or ())
        window = getattr(config, "sliding_window", None) if _SLIDING in layer_types or _uses_window(config) else None
        dtype = next(model.parameters()).dtype
        return cls(causal=causal, window=window, by_layer_type=_SLIDING in layer_types, dtype=dtype)

    def for_batch(
        self, lengths: np.ndarray, device: torch.device, to_device: Callable
    ) -> "torch.Tensor | dict[str, torch.Tensor | None] | None":
        """The attention mask of a batch of right-padded pairs of `lengths` (numpy, on the host); None: no mask."""
        longest = int(lengths.max())
        windowed = self.window is not None and longest > self.window
        if not self.causal and not windowed and bool((lengths == longest).all()):  # numpy: read on the host
            return {_FULL: None, _SLIDING: None} if self.by_layer_type else None
        rows = to_device(torch.from_numpy(lengths.astype(np.int64)), device)
        positions = torch.arange(longest, device=device)
        allowed = (positions[None, :] < rows[:, None])[:, None, None, :]  # [pairs, 1, 1, keys]: real tokens
        if self.causal:
            allowed = allowed & (positions[None, :] <= positions[:, None])[None, None]  # [pairs, 1, queries, keys]
        full = self._additive(allowed)
        if not self.by_layer_type and not windowed:
            return full
        distance = positions[:, None] - positions[None, :]  # query - key
        if self.causal:
            near = distance < self.window
        else:
            near = distance.abs() <= self.window
        sliding = self._additive(allowed & near[None, None])
        return {_FULL: full, _SLIDING: sliding} if self.by_layer_type else sliding

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros((), dtype=self.dtype, device=allowed.device)
        return torch.where(allowed, zero, torch.finfo(self.dtype).min)


def _uses_window(config) -> bool:
    """A config with one sliding window for every layer (Mistral-style), rather than layer types."""
    return bool(getattr(config, "sliding_window", None)) and getattr(config, "use_sliding_window", True) is not False
