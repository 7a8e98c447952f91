"""The cross-encoder runtime: load a sequence-classification model, tokenize and truncate pairs, score them.

The micro-batcher sees it only through `encode` (run in each request's thread) and `score` (run on the
model thread), so tests can put a fake model in its place.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from shared.errors import RerankError
from shared.settings import Settings
from worker.device import resolve_device, resolve_dtype, to_device
from worker.model_source import ModelLoadError, resolve_model_dir
from worker.packed_forward import PackedBatch, PackedForward
from worker.truncation import fit_pair, pair_too_long

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EncodedPair:
    """One (query, passage) pair ready for the model: token ids with special tokens, and segment ids.

    int64 arrays, made in the request's thread, so the model thread pads a batch with a few copies.
    """

    input_ids: np.ndarray
    type_ids: np.ndarray

    @classmethod
    def of(cls, encoding: Encoding) -> "EncodedPair":
        return cls(np.array(encoding.ids, dtype=np.int64), np.array(encoding.type_ids, dtype=np.int64))

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def key(self) -> tuple[bytes, bytes]:
        """What makes two pairs the same input to the model."""
        return self.input_ids.tobytes(), self.type_ids.tobytes()


class CrossEncoder:
    """A Hugging Face cross-encoder with one logit, on one device."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        *,
        pad_token_id: int,
        uses_token_type_ids: bool,
        max_seq_len: int,
        device: torch.device,
        packed: PackedForward | None = None,
    ) -> None:
        self.model = model
        self.packed = packed  # the packed-token forward, where the architecture and the setting allow it
        self.tokenizer = tokenizer
        self.pad_token_id = pad_token_id
        self.uses_token_type_ids = uses_token_type_ids
        self.max_seq_len = max_seq_len
        self.device = device
        self.pair_specials = tokenizer.num_special_tokens_to_add(is_pair=True)
        # END truncation inside the tokenizer: the passage (the second sequence) loses tokens from its end
        self._truncating = Tokenizer.from_str(tokenizer.to_str())
        self._truncating.enable_truncation(max_seq_len, strategy="only_second", direction="right")

    @classmethod
    def load(cls, settings: Settings) -> "CrossEncoder":
        """Load `settings.model` (safetensors only); raise ModelLoadError with a readable message."""
        started = time.perf_counter()
        model_dir = resolve_model_dir(settings.model, trust_remote_code=settings.trust_remote_code,
                                      revision=settings.model_revision)  # fmt: skip
        try:
            device = resolve_device(settings.device)
        except RerankError as exc:  # RERANK_DEVICE=cuda without a GPU: refused, never a silent CPU run
            raise ModelLoadError(exc.message) from None
        dtype = resolve_dtype(settings.dtype, device)
        remote = {"trust_remote_code": settings.trust_remote_code}
        try:
            config = AutoConfig.from_pretrained(model_dir, **remote)
            if config.num_labels != 1:
                raise ModelLoadError(
                    f"model {settings.model!r} has {config.num_labels} output labels; a reranker must have one logit"
                )
            hf_tokenizer = AutoTokenizer.from_pretrained(model_dir, **remote)
            model = load_classifier(model_dir, config=config, dtype=dtype, **remote)
        except ModelLoadError:
            raise
        except (OSError, ValueError, KeyError, ImportError) as exc:
            raise ModelLoadError(f"could not load model {settings.model!r}: {str(exc).strip().splitlines()[0]}") from None
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ModelLoadError(f"model {settings.model!r} has no fast (tokenizers) tokenizer")
        backend = Tokenizer.from_str(backend.to_str())  # a private copy, without truncation or padding
        backend.no_truncation()
        backend.no_padding()
        model.eval().to(device)
        logit_layer_in_float32(model)
        limit = model_token_limit(model, hf_tokenizer)
        if settings.max_seq_len is not None:
            if settings.max_seq_len > limit:
                log.warning("RERANK_MAX_SEQ_LEN=%d is over the model's limit; using %d", settings.max_seq_len, limit)
            limit = min(limit, settings.max_seq_len)
        pad_id = hf_tokenizer.pad_token_id
        if pad_id is None:
            pad_id = config.pad_token_id if config.pad_token_id is not None else 0
        encoder = cls(
            model,
            backend,
            pad_token_id=pad_id,
            uses_token_type_ids="token_type_ids" in hf_tokenizer.model_input_names,
            max_seq_len=limit,
            device=device,
            packed=PackedForward.of(model) if use_packed(settings.packed_forward, device) else None,
        )
        log.info(
            "loaded %s on %s (%s, %s forward), token limit %d, in %.1fs",
            settings.model, device, str(dtype).removeprefix("torch."), "packed" if encoder.packed else "padded",
            limit, time.perf_counter() - started,
        )
        return encoder

    def encode(
        self, query: str, passages: Sequence[str], truncate: str, max_passage_tokens: int | None = None
    ) -> list[EncodedPair]:
        """Tokenize one request's pairs and apply NONE/END truncation (raises RerankError for NONE).

        `max_passage_tokens` first cuts every passage to that many tokens (Cohere's `max_tokens_per_doc`).
        """
        query_enc = self.tokenizer.encode(query, add_special_tokens=False)
        room = self.max_seq_len - self.pair_specials - len(query_enc.ids)
        if max_passage_tokens is None and room > 0 and all(passages):
            return self._encode_pairs(query, passages, truncate)
        return self._encode_each(query_enc, passages, truncate, max_passage_tokens)

    def _encode_pairs(self, query: str, passages: Sequence[str], truncate: str) -> list[EncodedPair]:
        """The common case, where the query leaves room for the passages: every pair is tokenized,
        truncated and given its special tokens by the tokenizer in one call (in Rust, without the GIL,
        on the tokenizer's threads), so a request of 512 passages costs no per-pair Python but the result."""
        tokenizer = self._truncating if truncate == "END" else self.tokenizer
        encodings = tokenizer.encode_batch([(query, passage) for passage in passages], add_special_tokens=True)
        if truncate != "END":
            for index, encoding in enumerate(encodings):
                if len(encoding.ids) > self.max_seq_len:
                    raise pair_too_long(index=index, pair_len=len(encoding.ids), limit=self.max_seq_len)
        return [EncodedPair.of(encoding) for encoding in encodings]

    def _encode_each(
        self, query_enc: Encoding, passages: Sequence[str], truncate: str, max_passage_tokens: int | None
    ) -> list[EncodedPair]:
        """Pair by pair: empty passages, a per-passage token cap, or a query that leaves no room."""
        passage_encs = self.tokenizer.encode_batch(list(passages), add_special_tokens=False)
        query_len = len(query_enc.ids)
        pairs: list[EncodedPair] = []
        for index, passage_enc in enumerate(passage_encs):
            if max_passage_tokens is not None and len(passage_enc.ids) > max_passage_tokens:
                passage_enc = _cut(passage_enc, max_passage_tokens, self.tokenizer)
            kept = fit_pair(
                index=index,
                query_len=query_len,
                passage_len=len(passage_enc.ids),
                specials=self.pair_specials,
                limit=self.max_seq_len,
                truncate=truncate,
            )
            if kept.query < query_len:  # the same for every pair: cut the query once
                query_enc.truncate(kept.query)
                query_len = kept.query
            if kept.passage < len(passage_enc.ids):
                passage_enc = _cut(passage_enc, kept.passage, self.tokenizer)
            # an empty passage is encoded as the query alone, as transformers' tokenizer(query, "") does
            second = passage_enc if passages[index] else None
            merged = self.tokenizer.post_process(query_enc, second, add_special_tokens=True)
            pairs.append(EncodedPair.of(merged))
        return pairs

    def score(self, pairs: Sequence[EncodedPair]) -> list[float]:
        """One forward pass over `pairs` (packed, or padded to the longest); the logits in the same order."""
        if self.packed is not None:
            with torch.inference_mode():
                logits = self.packed.logits(PackedBatch.of(pairs, self.uses_token_type_ids), self.device, to_device)
            return logits[:, 0].float().cpu().tolist()
        input_ids, attention, type_ids = pad_batch(pairs, self.pad_token_id)
        inputs = {
            "input_ids": to_device(torch.from_numpy(input_ids), self.device),
            "attention_mask": to_device(torch.from_numpy(attention), self.device),
        }
        if self.uses_token_type_ids:
            inputs["token_type_ids"] = to_device(torch.from_numpy(type_ids), self.device)
        with torch.inference_mode():
            logits = self.model(**inputs).logits
        return logits[:, 0].float().cpu().tolist()  # the one synchronisation with the device

    def warmup(self) -> None:
        """Run one small pass so the first request does not pay for lazy initialisation.

        Call it on the thread that will run the forward passes (`MicroBatcher.start(warmup=...)`).
        """
        self.score(self.encode("warm up", ["the model"], "END"))


def use_packed(setting: str, device: torch.device) -> bool:
    """Whether RERANK_PACKED_FORWARD asks for the packed forward on `device` (`auto`: on a CPU)."""
    return setting == "on" or (setting == "auto" and device.type == "cpu")


def load_classifier(model_dir: str, **kwargs) -> torch.nn.Module:
    """The sequence classifier with torch's fused SDPA attention, or the architecture's own where it has none."""
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            model_dir, attn_implementation="sdpa", use_safetensors=True, **kwargs
        )
    except ValueError as exc:
        if "attention" not in str(exc).lower():
            raise
        log.info("this architecture has no SDPA attention; using its default")
        return AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True, **kwargs)


def logit_layer_in_float32(model: torch.nn.Module) -> None:
    """Compute the model's output layer (the linear layer that gives its one logit) in float32.

    In bfloat16 a logit is rounded to 8 significant bits (steps of 1/32 near 5), so passages that score
    nearly alike come out tied; in float32 that one dot product per pair costs nothing. Layers before it
    keep the model's dtype.
    """
    labels = model.config.num_labels
    outputs = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == labels]
    if not outputs or outputs[-1].weight.dtype == torch.float32:
        return
    outputs[-1].float().register_forward_pre_hook(
        lambda _module, args: tuple(arg.float() if torch.is_tensor(arg) else arg for arg in args)
    )


def pad_batch(pairs: Sequence[EncodedPair], pad_token_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids, attention mask and segment ids of `pairs`, right-padded to the longest, as int64 arrays.

    Filled in whole-array operations: the pairs' arrays are concatenated into one flat array and scattered
    through the mask, so there is no Python loop over tokens on the model thread.
    """
    lengths = np.fromiter((len(pair.input_ids) for pair in pairs), dtype=np.int64, count=len(pairs))
    mask = np.arange(int(lengths.max())) < lengths[:, None]
    input_ids = np.full(mask.shape, pad_token_id, dtype=np.int64)
    input_ids[mask] = np.concatenate([pair.input_ids for pair in pairs])
    type_ids = np.zeros(mask.shape, dtype=np.int64)
    type_ids[mask] = np.concatenate([pair.type_ids for pair in pairs])
    return input_ids, mask.astype(np.int64), type_ids


def model_token_limit(model: torch.nn.Module, hf_tokenizer) -> int:
    """The longest pair the model supports: the tokenizer's limit and the position embeddings' room.

    RoBERTa-family models number positions from padding_idx + 1, so 514 position embeddings hold 512 tokens.
    """
    limits = []
    tokenizer_limit = getattr(hf_tokenizer, "model_max_length", None)
    if tokenizer_limit and tokenizer_limit < 1_000_000:
        limits.append(int(tokenizer_limit))
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions:
        embeddings = getattr(getattr(model, "base_model", model), "embeddings", None)
        position_table = getattr(embeddings, "position_embeddings", None)
        padding_idx = getattr(position_table, "padding_idx", None)
        limits.append(int(positions) - (padding_idx + 1 if padding_idx is not None else 0))
    if not limits:
        raise ModelLoadError("cannot tell the model's token limit; set RERANK_MAX_SEQ_LEN")
    return min(limits)


def _cut(encoding: Encoding, keep: int, tokenizer: Tokenizer) -> Encoding:
    """The first `keep` tokens of an encoding (an empty encoding for zero)."""
    if keep == 0:
        return tokenizer.encode("", add_special_tokens=False)
    encoding.truncate(keep)
    return encoding
