"""The reranker runtime of the engine process: load a model as its recipe says, score batches of pairs.

The recipe (worker/text/recipes.py) picks how pairs become tokens (the tokenizer's pair encoding, or a
prompt: worker/text/prompting.py) and how a score is read (the classifier's logit, or token logits of a
causal LM: worker/model/token_logits.py). The engine's loop sees it only through `launch` (flat token arrays
in; one float32 logit per pair and the pass's device time out) and `warmup`; the tokenizer and recipe it
loads with the model are handed to the worker's Celery process, which tokenizes. `encode` is here for in-process use (benchmarks, tests,
the warm-up).
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Sequence

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from shared.errors import RerankError
from shared.settings import Settings
from worker.model.device import resolve_device, resolve_dtype, to_device
from worker.model.masks import HostMasks
from worker.model.packed_forward import PackedBatch, PackedForward
from worker.model.token_logits import TokenLogits, load_token_logits
from worker.model_source import ModelLoadError, from_pretrained, resolve_model_dir
from worker.text.prompting import text_encoder
from worker.text.recipes import PLAIN, Recipe, load_recipe
from worker.text.tokenization import EncodedPairs

log = logging.getLogger(__name__)


class CrossEncoder:
    """A Hugging Face reranker on one device: a classifier with one logit, or a causal LM read at its last token."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        *,
        pad_token_id: int,
        uses_token_type_ids: bool,
        max_seq_len: int,
        device: torch.device,
        own_forward: PackedForward | None = None,
        layout: str = "transformers",
        recipe: Recipe = PLAIN,
    ) -> None:
        self.model = model  # a sequence classifier, or a TokenLogits scorer (worker/model/token_logits.py)
        self.recipe = recipe
        self.own_forward = own_forward  # this project's encoder forward, where the architecture and setting allow it
        self.layout = layout if own_forward is not None else "transformers"  # FORWARD_LAYOUTS
        self.tokenizer = tokenizer  # the model's own, without truncation or padding: what the Celery process gets
        self.pad_token_id = pad_token_id
        self.uses_token_type_ids = uses_token_type_ids
        self.max_seq_len = max_seq_len
        self.device = device
        self.pairs = text_encoder(tokenizer, recipe, max_seq_len=max_seq_len, uses_type_ids=uses_token_type_ids)
        self.masks = HostMasks.of(model.decoder if isinstance(model, TokenLogits) else model)
        # On CUDA masks are decided on the host (transformers' own path reads the device every pass); on a CPU
        # there is nothing to wait for, and transformers' path keeps SDPA's causal kernel for a batch of one length
        self.host_masks = device.type == "cuda"

    @classmethod
    def load(cls, settings: Settings) -> "CrossEncoder":
        """Load `settings.model` (safetensors only) as its recipe says; raise ModelLoadError with a readable message."""
        started = time.perf_counter()
        model_dir = resolve_model_dir(settings.model, trust_remote_code=settings.trust_remote_code,
                                      revision=settings.model_revision)  # fmt: skip
        recipe = load_recipe(settings.model, model_dir, settings.recipe_file)
        try:
            device = resolve_device(settings.device)
        except RerankError as exc:  # RERANK_DEVICE=cuda without a GPU: refused, never a silent CPU run
            raise ModelLoadError(exc.message) from None
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
        layout = forward_layout(settings.packed_forward, device, config.hidden_size)
        pad_id = hf_tokenizer.pad_token_id
        if pad_id is None:
            pad_id = config.pad_token_id if config.pad_token_id is not None else 0
        encoder = cls(
            model,
            backend,
            pad_token_id=pad_id,
            uses_token_type_ids="token_type_ids" in hf_tokenizer.model_input_names and recipe.prompt is None,
            max_seq_len=limit,
            device=device,
            own_forward=PackedForward.of(model) if layout != "transformers" else None,
            layout=layout,
            recipe=recipe,
        )
        log.info(
            "loaded %s on %s (%s, %s forward, %s from %s), token limit %d, weights %.1f MiB, in %.1fs",
            settings.model, device, str(dtype).removeprefix("torch."), encoder.layout,
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
    ) -> EncodedPairs:
        """One request's pairs, tokenized and truncated as the worker's Celery process does it."""
        return self.pairs.encode(query, passages, truncate, max_passage_tokens, instruction)

    def score(self, pairs: EncodedPairs) -> np.ndarray:
        """One forward pass over `pairs` (in the model's `layout`); float32 logits in the same order."""
        return self.launch(pairs)()[0]

    def launch(self, pairs: EncodedPairs) -> Callable[[], tuple[np.ndarray, float | None]]:
        """Start a forward pass; the function it returns gives its logits and the seconds the device spent on
        it (None on a CPU, where the pass ran here and the caller's clock is the pass's).

        On CUDA the pass is only queued, and nothing in it reads the device (masks are decided on the host:
        worker/model/masks.py), so the engine forms and queues the next batch while the device works; the
        logits come back through pinned memory, timed by two CUDA events, with one event to wait on.
        """
        cuda = self.device.type == "cuda"
        if cuda:
            started = torch.cuda.Event(enable_timing=True)
            started.record()
        with torch.inference_mode():
            logits = self._logits(pairs)[:, 0].float()
        if not cuda:
            result = logits.numpy()
            return lambda: (result, None)
        host = torch.empty(logits.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(logits, non_blocking=True)
        copied = torch.cuda.Event(enable_timing=True)
        copied.record()

        def result() -> tuple[np.ndarray, float]:
            copied.synchronize()  # the one synchronisation with the device
            return host.numpy(), started.elapsed_time(copied) / 1000

        return result

    def _logits(self, pairs: EncodedPairs) -> torch.Tensor:
        if self.layout != "transformers":
            layout = PackedBatch.of if self.layout == "packed" else PackedBatch.padded_rows
            return self.own_forward.logits(layout(pairs, self.uses_token_type_ids), self.device, to_device)
        input_ids, padding, type_ids = pad_batch(pairs, self.pad_token_id)
        ids = to_device(torch.from_numpy(input_ids), self.device)
        if self.host_masks:
            mask = self.masks.for_batch(pairs.lengths, self.device, to_device)
        else:
            mask = to_device(torch.from_numpy(padding), self.device)
        if isinstance(self.model, TokenLogits):
            lengths = to_device(torch.from_numpy(pairs.lengths.astype(np.int64)), self.device)
            return self.model(ids, mask, lengths=lengths)[:, None]
        inputs = {"input_ids": ids, "attention_mask": mask}
        if self.uses_token_type_ids:
            inputs["token_type_ids"] = to_device(torch.from_numpy(type_ids), self.device)
        return self.model(**inputs).logits

    def warmup(self) -> None:
        """Run one small pass so the first request does not pay for lazy initialisation.

        Call it on the thread that will run the forward passes: torch gives each thread its own OpenMP team.
        On a GPU it logs the memory the worker holds, so that workers sharing a GPU can be sized.
        """
        self.score(self.encode("warm up", ["the model"], "END"))
        if self.device.type == "cuda":
            log.info("GPU memory after warm-up: %.0f MiB allocated, %.0f MiB reserved by torch",
                     torch.cuda.memory_allocated() / 2**20, torch.cuda.memory_reserved() / 2**20)  # fmt: skip


FORWARD_LAYOUTS = ("packed", "padded rows", "transformers")  # this project's forward in two layouts, or transformers'
PACKED_MIN_HIDDEN = 256  # below it, on a CPU, the packed layout's index copies cost more than the padding they skip


def forward_layout(setting: str, device: torch.device, hidden_size: int) -> str:
    """Which forward RERANK_PACKED_FORWARD asks for on `device` for a model of `hidden_size` (FORWARD_LAYOUTS).

    `on`: packed tokens. `off`: transformers' own padded forward. `auto`: on a CPU this project's forward
    (worker/model/packed_forward.py: oneDNN linear layers, one matmul for query, key and value), over packed
    tokens for hidden size 256 or more and over padded rows below it; on CUDA transformers'. On the AVX2 CPU
    of 2026-12-01 (`python -m ops.bench.layouts`: one thread, 8-24-word passages in length-sorted batches of
    2,048 tokens, fresh shapes every round; ops/BENCHMARKS.md, "Engine notes"), speed per pair against
    transformers': packed 1.12x and padded rows 1.08x at hidden 384 (2 layers), 1.12x and 1.06x at 256,
    0.94x and 1.01x at 128, 0.84x and 1.44x at 32 (one layer, the overhead benchmark's near-free model).
    An architecture the own forward does not know (worker/model/packed_forward.py) always takes transformers'."""
    if setting == "on":
        return "packed"
    if setting == "off" or device.type != "cpu":
        return "transformers"
    return "packed" if hidden_size >= PACKED_MIN_HIDDEN else "padded rows"


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


def pad_batch(pairs: EncodedPairs, pad_token_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids, attention mask and segment ids of `pairs`, right-padded to the longest, as int64 arrays.

    Filled in whole-array operations: the flat token ids are scattered through the mask, so there is no
    Python loop over pairs or tokens on the engine's thread.
    """
    lengths = pairs.lengths.astype(np.int64)
    mask = np.arange(int(lengths.max())) < lengths[:, None]
    input_ids = np.full(mask.shape, pad_token_id, dtype=np.int64)
    input_ids[mask] = pairs.input_ids
    type_ids = np.zeros(mask.shape, dtype=np.int64)
    if pairs.type_ids is not None:
        type_ids[mask] = pairs.type_ids
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
