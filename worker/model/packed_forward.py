"""A forward pass over packed tokens for BERT-family cross-encoders (BERT, RoBERTa, XLM-RoBERTa).

A batch padded to its longest pair spends the padding's share of every linear layer, GELU and LayerNorm
on nothing. Here the tokens of all pairs are packed into one [tokens, hidden] matrix for all of those;
only attention sees the pairs padded, through SDPA with a key mask. The model's own modules do the work
(same weights, same activation, same LayerNorm), so logits match transformers' padded forward to float
rounding (tests/unit/worker/test_packed_forward.py). On a CPU the linear layers go through oneDNN (float32 or
bfloat16) where it is as accurate as torch's own kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from worker.text.tokenization import EncodedPairs

# model_type -> (attribute of the base model, whether positions start after padding_idx as in RoBERTa)
_FAMILIES = {"bert": ("bert", False), "roberta": ("roberta", True), "xlm-roberta": ("roberta", True)}


@dataclass(frozen=True, slots=True)
class PackedBatch:
    """The tokens of a batch of pairs, end to end, with where each sits in the padded [pairs, longest] layout."""

    input_ids: np.ndarray  # [tokens]
    type_ids: np.ndarray  # [tokens]
    positions: np.ndarray  # [tokens], position within its pair
    padded_index: np.ndarray | None  # [tokens], row * longest + position; None: the tokens are the padded rows
    starts: np.ndarray  # [pairs], index of each pair's first token
    lengths: np.ndarray  # [pairs]

    @classmethod
    def of(cls, pairs: EncodedPairs, with_type_ids: bool = True) -> "PackedBatch":
        """Pack a batch's flat token arrays, without a loop over pairs or tokens.

        Without `with_type_ids` (or segment ids) every token is of segment 0, as for models that take none."""
        lengths = pairs.lengths.astype(np.int64)
        starts = np.cumsum(lengths) - lengths
        positions = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)
        rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        return cls(
            input_ids=pairs.input_ids.astype(np.int64),
            type_ids=(
                pairs.type_ids.astype(np.int64)
                if with_type_ids and pairs.type_ids is not None
                else np.zeros_like(positions)
            ),
            positions=positions,
            padded_index=rows * int(lengths.max()) + positions,
            starts=starts,
            lengths=lengths,
        )

    @classmethod
    def padded_rows(cls, pairs: EncodedPairs, with_type_ids: bool = True) -> "PackedBatch":
        """The batch as rows padded to the longest pair, row after row (padding: token 0 of segment 0).

        For small models on a CPU: there the packed layout's index copies cost more than the padding's share
        of the linear layers, since batches of length-sorted pairs carry little padding."""
        lengths = pairs.lengths.astype(np.int64)
        longest = int(lengths.max())
        mask = np.arange(longest) < lengths[:, None]
        input_ids = np.zeros(mask.shape, dtype=np.int64)
        input_ids[mask] = pairs.input_ids
        type_ids = np.zeros(mask.shape, dtype=np.int64)
        if with_type_ids and pairs.type_ids is not None:
            type_ids[mask] = pairs.type_ids
        return cls(
            input_ids=input_ids.ravel(),
            type_ids=type_ids.ravel(),
            positions=np.tile(np.arange(longest, dtype=np.int64), len(lengths)),
            padded_index=None,
            starts=np.arange(len(lengths), dtype=np.int64) * longest,
            lengths=lengths,
        )


Linear = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], torch.Tensor]  # (x, weight, bias, gelu)


def torch_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gelu: bool) -> torch.Tensor:
    """x @ weight.T + bias, then exact GELU if asked: torch's own kernels (MKL's sgemm on x86 CPUs)."""
    y = F.linear(x, weight, bias)
    return F.gelu(y) if gelu else y


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gelu: bool) -> torch.Tensor:
    """The same through oneDNN, GELU fused: on this project's AVX-512 AMD CPU it ran BERT's linear layers
    2.2x faster than F.linear (ops/BENCHMARKS.md, "Engine notes")."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu" if gelu else "none", [], "none" if gelu else "")


def linear_kernel(device: torch.device, dtype: torch.dtype) -> Linear:
    """oneDNN's linear where torch has it and it is as accurate as F.linear here (float32 or bfloat16 on a
    CPU), else torch's. Both are checked against the same product in float32 on a small probe."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    cpu_dtypes = (torch.float32, torch.bfloat16)
    if device.type != "cpu" or dtype not in cpu_dtypes or op is None or not torch.backends.mkldnn.is_available():
        return torch_linear
    probe = torch.Generator().manual_seed(0)
    x, weight, bias = (torch.randn(*shape, generator=probe) for shape in ((33, 64), (48, 64), (48,)))
    low = [tensor.to(dtype) for tensor in (x, weight, bias)]
    try:
        with torch.inference_mode():
            agree = True
            for gelu in (False, True):
                exact = torch_linear(*(tensor.to(dtype).float() for tensor in (x, weight, bias)), gelu)
                torch_error = (torch_linear(*low, gelu).float() - exact).abs().max()
                onednn_error = (onednn_linear(*low, gelu).float() - exact).abs().max()
                agree = agree and bool(onednn_error <= 2 * torch_error + 1e-4)
    except RuntimeError:
        agree = False
    return onednn_linear if agree else torch_linear


@dataclass(frozen=True, slots=True)
class _Layer:
    """One encoder layer's weights, as the packed forward uses them."""

    qkv: tuple[torch.Tensor, torch.Tensor]  # query, key and value side by side: one matmul for the three
    attention_out: tuple[torch.Tensor, torch.Tensor]
    attention_norm: torch.nn.Module
    intermediate: tuple[torch.Tensor, torch.Tensor]
    activation: Callable | None  # None: exact GELU, fused into the intermediate matmul
    output: tuple[torch.Tensor, torch.Tensor]
    output_norm: torch.nn.Module

    @classmethod
    def of(cls, layer: torch.nn.Module, exact_gelu: bool) -> "_Layer":
        attention = layer.attention.self
        return cls(
            qkv=(torch.cat([attention.query.weight, attention.key.weight, attention.value.weight]).detach(),
                 torch.cat([attention.query.bias, attention.key.bias, attention.value.bias]).detach()),  # fmt: skip
            attention_out=_weights(layer.attention.output.dense),
            attention_norm=layer.attention.output.LayerNorm,
            intermediate=_weights(layer.intermediate.dense),
            activation=None if exact_gelu else layer.intermediate.intermediate_act_fn,
            output=_weights(layer.output.dense),
            output_norm=layer.output.LayerNorm,
        )


class PackedForward:
    """Logits of a supported sequence classifier computed over packed tokens; build it with `of`."""

    def __init__(self, base: torch.nn.Module, head: Callable, position_offset: int, exact_gelu: bool) -> None:
        self._embeddings = base.embeddings
        self._layers = [_Layer.of(layer, exact_gelu) for layer in base.encoder.layer]
        self._head = head
        self._position_offset = position_offset
        attention = base.encoder.layer[0].attention.self
        self._heads = attention.num_attention_heads
        self._head_size = attention.attention_head_size
        weight = self._layers[0].qkv[0]
        self.linear = linear_kernel(weight.device, weight.dtype)

    @classmethod
    def of(cls, model: torch.nn.Module) -> "PackedForward | None":
        """The packed forward of `model`, or None where its architecture is not one this module knows."""
        config = model.config
        family = _FAMILIES.get(config.model_type)
        if family is None or config.is_decoder or getattr(config, "position_embedding_type", "absolute") != "absolute":
            return None
        base = getattr(model, family[0], None)
        layers = getattr(getattr(base, "encoder", None), "layer", None)
        if base is None or not layers or any(_unusual(layer) for layer in layers):
            return None
        if config.model_type == "bert":
            if base.pooler is None:
                return None

            def head(first: torch.Tensor) -> torch.Tensor:
                return model.classifier(model.dropout(base.pooler(first[:, None, :])))
        else:

            def head(first: torch.Tensor) -> torch.Tensor:
                return model.classifier(first[:, None, :])

        offset = base.embeddings.padding_idx + 1 if family[1] else 0
        return cls(base, head, offset, exact_gelu=config.hidden_act == "gelu")

    def logits(self, batch: PackedBatch, device: torch.device, to_device: Callable) -> torch.Tensor:
        """[pairs, labels] logits of a batch, packed or in padded rows."""
        pairs, longest = len(batch.lengths), int(batch.lengths.max())
        ids = to_device(torch.from_numpy(batch.input_ids), device)
        types = to_device(torch.from_numpy(batch.type_ids), device)
        positions = to_device(torch.from_numpy(batch.positions + self._position_offset), device)
        packed = batch.padded_index is not None
        padded_index = to_device(torch.from_numpy(batch.padded_index), device) if packed else None
        lengths = to_device(torch.from_numpy(batch.lengths), device)
        # [pairs, 1, 1, longest]: every query sees its own pair's keys
        key_mask = (torch.arange(longest, device=device)[None, :] < lengths[:, None])[:, None, None, :]
        emb = self._embeddings
        hidden = emb.word_embeddings(ids) + emb.token_type_embeddings(types)  # the order transformers adds them
        hidden = emb.LayerNorm(hidden + emb.position_embeddings(positions))
        width, linear = self._heads * self._head_size, self.linear
        for layer in self._layers:
            qkv = linear(hidden, *layer.qkv, False)  # [tokens, 3 * width]
            if packed:
                qkv = qkv.new_zeros(pairs * longest, 3 * width).index_copy_(0, padded_index, qkv)
            q, k, v = qkv.view(pairs, longest, 3, self._heads, self._head_size).permute(2, 0, 3, 1, 4)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)  # [pairs, heads, longest, size]
            context = context.transpose(1, 2).reshape(pairs * longest, width)
            if packed:
                context = context.index_select(0, padded_index)
            hidden = layer.attention_norm(linear(context, *layer.attention_out, False) + hidden)
            if layer.activation is None:
                intermediate = linear(hidden, *layer.intermediate, True)
            else:
                intermediate = layer.activation(linear(hidden, *layer.intermediate, False))
            hidden = layer.output_norm(linear(intermediate, *layer.output, False) + hidden)
        starts = to_device(torch.from_numpy(batch.starts), device)
        return self._head(hidden.index_select(0, starts))


def _unusual(layer: torch.nn.Module) -> bool:
    """A layer that is not the plain post-LayerNorm BERT block this module reproduces."""
    attention = getattr(getattr(layer, "attention", None), "self", None)
    return (
        attention is None
        or not all(hasattr(attention, name) for name in ("query", "key", "value", "num_attention_heads"))
        or getattr(layer, "add_cross_attention", False)
        or not hasattr(layer, "intermediate")
        or not hasattr(layer, "output")
    )


def _weights(dense: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    return dense.weight.detach(), dense.bias.detach()
