"""A forward pass over packed tokens for BERT-family cross-encoders (BERT, RoBERTa, XLM-RoBERTa).

A batch padded to its longest pair spends the padding's share of every linear layer, GELU and LayerNorm
on nothing. Here the tokens of all pairs are packed into one [tokens, hidden] matrix for all of those;
only attention sees the pairs padded, through SDPA with a key mask. The model's own modules do the work
(same weights, same activation, same LayerNorm), so logits match transformers' padded forward to float
rounding (tests/unit/test_packed_forward.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

# model_type -> (attribute of the base model, whether positions start after padding_idx as in RoBERTa)
_FAMILIES = {"bert": ("bert", False), "roberta": ("roberta", True), "xlm-roberta": ("roberta", True)}


@dataclass(frozen=True, slots=True)
class PackedBatch:
    """The tokens of a batch of pairs, end to end, with where each sits in the padded [pairs, longest] layout."""

    input_ids: np.ndarray  # [tokens]
    type_ids: np.ndarray  # [tokens]
    positions: np.ndarray  # [tokens], position within its pair
    padded_index: np.ndarray  # [tokens], row * longest + position
    starts: np.ndarray  # [pairs], index of each pair's first token
    lengths: np.ndarray  # [pairs]

    @classmethod
    def of(cls, pairs: Sequence, with_type_ids: bool = True) -> "PackedBatch":
        """Pack pairs that have `input_ids` and `type_ids` int64 arrays, without a loop over tokens.

        Without `with_type_ids` every token is of segment 0, as for models that take no segment ids."""
        lengths = np.fromiter((len(pair.input_ids) for pair in pairs), dtype=np.int64, count=len(pairs))
        starts = np.cumsum(lengths) - lengths
        positions = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)
        rows = np.repeat(np.arange(len(pairs), dtype=np.int64), lengths)
        return cls(
            input_ids=np.concatenate([pair.input_ids for pair in pairs]),
            type_ids=(
                np.concatenate([pair.type_ids for pair in pairs]) if with_type_ids else np.zeros_like(positions)
            ),
            positions=positions,
            padded_index=rows * int(lengths.max()) + positions,
            starts=starts,
            lengths=lengths,
        )


class PackedForward:
    """Logits of a supported sequence classifier computed over packed tokens; build it with `of`."""

    def __init__(self, base: torch.nn.Module, head: Callable, position_offset: int) -> None:
        self._embeddings = base.embeddings
        self._layers = list(base.encoder.layer)
        self._head = head
        self._position_offset = position_offset
        attention = self._layers[0].attention.self
        self._heads = attention.num_attention_heads
        self._head_size = attention.attention_head_size
        # one matmul for query, key and value: their weights side by side, made once at load
        self._qkv = [
            (
                torch.cat([layer.attention.self.query.weight, layer.attention.self.key.weight,
                           layer.attention.self.value.weight]).detach(),  # fmt: skip
                torch.cat([layer.attention.self.query.bias, layer.attention.self.key.bias,
                           layer.attention.self.value.bias]).detach(),  # fmt: skip
            )
            for layer in self._layers
        ]

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
        return cls(base, head, offset)

    def logits(self, batch: PackedBatch, device: torch.device, to_device: Callable) -> torch.Tensor:
        """[pairs, labels] logits of a packed batch."""
        pairs, longest = len(batch.lengths), int(batch.lengths.max())
        ids = to_device(torch.from_numpy(batch.input_ids), device)
        types = to_device(torch.from_numpy(batch.type_ids), device)
        positions = to_device(torch.from_numpy(batch.positions + self._position_offset), device)
        padded_index = to_device(torch.from_numpy(batch.padded_index), device)
        key_mask = (torch.arange(longest, device=device)[None, :] < to_device(torch.from_numpy(batch.lengths), device)[:, None])
        key_mask = key_mask[:, None, None, :]  # [pairs, 1, 1, longest]: every query sees its pair's keys
        emb = self._embeddings
        hidden = emb.word_embeddings(ids) + emb.token_type_embeddings(types)  # the order transformers adds them
        hidden = emb.LayerNorm(hidden + emb.position_embeddings(positions))
        width = self._heads * self._head_size
        for layer, (qkv_weight, qkv_bias) in zip(self._layers, self._qkv):
            qkv = F.linear(hidden, qkv_weight, qkv_bias)  # [tokens, 3 * width]
            padded = qkv.new_zeros(pairs * longest, 3 * width).index_copy_(0, padded_index, qkv)
            q, k, v = padded.view(pairs, longest, 3, self._heads, self._head_size).permute(2, 0, 3, 1, 4)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)  # [pairs, heads, longest, size]
            context = context.transpose(1, 2).reshape(pairs * longest, width).index_select(0, padded_index)
            hidden = layer.attention.output(context, hidden)
            hidden = layer.output(layer.intermediate(hidden), hidden)
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
