"""The cross-encoder runtime: load a model as its recipe says, tokenize and truncate pairs, score them.

The recipe (worker/recipes.py) picks how pairs become tokens (the tokenizer's pair encoding here, or a
prompt: worker/prompting.py) and how a score is read (the classifier's logit, or token logits of a causal
LM: worker/token_logits.py). The micro-batcher sees it only through `encode` (run in each request's
thread) and `score` (run on the model thread), so tests can put a fake model in its place.
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

from shared.settings import Settings
from worker.device import resolve_device, resolve_dtype, to_device
from worker.model_source import ModelLoadError, from_pretrained, resolve_model_dir
from worker.packed_forward import PackedBatch, PackedForward
from worker.prompting import PromptEncoder, instruction_refused
from worker.recipes import load_recipe
from worker.token_logits import TokenLogits, load_token_logits
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

    @classmethod
    def of_ids(cls, ids: Sequence[int]) -> "EncodedPair":
        """A prompted sequence (worker/prompting.py): its ids, all of segment 0."""
        input_ids = np.array(ids, dtype=np.int64)
        return cls(input_ids, np.zeros_like(input_ids))

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
        prompt: PromptEncoder | None = None,
    ) -> None:
        self.model = model  # a sequence classifier, or a TokenLogits scorer (worker/token_logits.py)
        self.packed = packed  # the packed-token forward, where the architecture and the setting allow it
        self.prompt = prompt  # the recipe's prompt, if it has one; else the tokenizer's own pair encoding
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
        """Load `settings.model` (safetensors only) as its recipe says; raise ModelLoadError with a readable message."""
        started = time.perf_counter()
        model_dir = resolve_model_dir(settings.model, trust_remote_code=settings.trust_remote_code)
        recipe = load_recipe(settings.model, model_dir, settings.recipe_file)
        device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, device)
        remote = {"trust_remote_code": settings.trust_remote_code}
        try:
            config = AutoConfig.from_pretrained(model_dir, **remote)
            hf_tokenizer = AutoTokenizer.from_pretrained(model_dir, **remote)
            backend = _private_tokenizer(hf_tokenizer, settings.model)
            if recipe.score.type == "token_logits":
                model = load_token_logits(model_dir, config=config, recipe=recipe, tokenizer=backend, dtype=dtype,
                                          device=device, **remote)  # fmt: skip
            elif config.num_labels != 1:
                raise ModelLoadError(
                    f"model {settings.model!r} has {config.num_labels} output labels; a classifier reranker must have "
                    "one logit (a causal-LM reranker needs a recipe with score.type token_logits: see README, Recipes)"
                )
            else:
                model = load_classifier(model_dir, config=config, dtype=dtype, **remote)
                logit_layer_in_float32(model)  # a TokenLogits scorer computes its rows in float32 itself
        except ModelLoadError:
            raise
        except (OSError, ValueError, KeyError, ImportError) as exc:
            raise ModelLoadError(f"could not load model {settings.model!r}: {str(exc).strip().splitlines()[0]}") from None
        model.eval().to(device)
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
            prompt=PromptEncoder(backend, recipe, limit) if recipe.prompt is not None else None,
        )
        log.info(
            "loaded %s on %s (%s, %s forward, %s from %s), token limit %d, weights %.1f MiB, in %.1fs",
            settings.model, device, str(dtype).removeprefix("torch."), "packed" if encoder.packed else "padded",
            recipe.score.type, recipe.origin, limit, weights_mib(model), time.perf_counter() - started,
        )
        return encoder

    def encode(
        self,
        query: str,
        passages: Sequence[str],
        truncate: str,
        max_passage_tokens: int | None = None,
        instruction: str | None = None,
    ) -> list[EncodedPair]:
        """Tokenize one request's pairs and apply NONE/END truncation (raises RerankError for NONE).

        `max_passage_tokens` first cuts every passage to that many tokens (Cohere's `max_tokens_per_doc`);
        `instruction` fills the prompt's {instruction} (VALIDATION if the recipe has none).
        """
        if self.prompt is not None:
            ids = self.prompt.encode(query, passages, truncate, instruction, max_passage_tokens)
            return [EncodedPair.of_ids(sequence) for sequence in ids]
        if instruction is not None:
            raise instruction_refused()
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
            if isinstance(self.model, TokenLogits):
                logits = self.model(inputs["input_ids"], inputs["attention_mask"])[:, None]
            else:
                logits = self.model(**inputs).logits
        return logits[:, 0].float().cpu().tolist()  # the one synchronisation with the device

    def warmup(self) -> None:
        """Run one small pass so the first request does not pay for lazy initialisation.

        Call it on the thread that will run the forward passes (`MicroBatcher.start(warmup=...)`).
        On a GPU it logs the memory the worker holds, so that workers sharing a GPU can be sized.
        """
        self.score(self.encode("warm up", ["the model"], "END"))
        if self.device.type == "cuda":
            log.info("GPU memory after warm-up: %.0f MiB allocated, %.0f MiB reserved by torch",
                     torch.cuda.memory_allocated() / 2**20, torch.cuda.memory_reserved() / 2**20)  # fmt: skip


def use_packed(setting: str, device: torch.device) -> bool:
    """Whether RERANK_PACKED_FORWARD asks for the packed forward on `device` (`auto`: on a CPU)."""
    return setting == "on" or (setting == "auto" and device.type == "cpu")


def load_classifier(model_dir: str, **kwargs) -> torch.nn.Module:
    """The sequence classifier with torch's fused SDPA attention, or the architecture's own where it has none."""
    return from_pretrained(AutoModelForSequenceClassification, model_dir, **kwargs)


def weights_mib(model: torch.nn.Module) -> float:
    """Memory the model's parameters and buffers take, in MiB (what each worker of the model holds)."""
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}.values()  # tied weights once
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def _private_tokenizer(hf_tokenizer, model: str) -> Tokenizer:
    """A private copy of the model's fast tokenizer, without truncation or padding."""
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelLoadError(f"model {model!r} has no fast (tokenizers) tokenizer")
    backend = Tokenizer.from_str(backend.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


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
