"""Tiny offline stand-ins for the rerankers that need a prompt (API.md section 5), each with its rerank_config.json.

- `qwen3-reranker`: a Qwen3ForCausalLM (untied LM head, as Qwen3-Reranker-4B/8B) with a byte-level BPE
  tokenizer trained here that holds Qwen's chat specials, `<think>`/`</think>` and the single tokens
  `yes`/`no`; scored by the Qwen3-Reranker recipe ("yes" against "no").
- `gemma-reranker`: a GemmaForCausalLM (tied embeddings) with a SentencePiece-style BPE tokenizer that adds
  `<bos>` and holds the single token `Yes`; scored by the bge-reranker-v2-gemma recipe ("Yes" alone).
- `nv-reranker`: a LlamaForSequenceClassification with one logit and a Llama-3-style tokenizer that adds
  `<|begin_of_text|>`; scored by the NV RerankQA recipe (`question:{query} \\n \\n passage:{passage}`).

Their recipes are the built-in recipes of the real models (worker/text/recipes.py), written to rerank_config.json.
The weights are random: the scores are not trained for relevance, only computed as the real models' are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    GemmaConfig,
    GemmaForCausalLM,
    LlamaConfig,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from worker.text.recipes import BUILT_IN, RECIPE_FILE

TINY_DECODER = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    head_dim=8, max_position_embeddings=512, initializer_range=0.2,
)  # fmt: skip


def build_qwen3_reranker(out_dir: str | os.PathLike, *, seed: int = 0, shape: dict = TINY_DECODER) -> Path:
    """A Qwen3-shaped causal-LM reranker and the Qwen3-Reranker recipe (`shape` may give a larger vocab_size than
    the tokenizer's, as Qwen3's own config does)."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = train_tokenizer(specials=specials, words=("yes", "no"), byte_level=True, seed=seed)
    backend.add_tokens([AddedToken(text, special=False, normalized=False) for text in ("<think>", "</think>")])
    ids = {name: backend.token_to_id(name) for name in specials}
    torch.manual_seed(seed)
    config = Qwen3Config(tie_word_embeddings=False, pad_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         bos_token_id=None, **{"vocab_size": backend.get_vocab_size(), **shape})  # fmt: skip
    tokenizer = _tokenizer(backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    return _save(out_dir, Qwen3ForCausalLM(config), tokenizer, BUILT_IN["Qwen/Qwen3-Reranker-0.6B"])


def build_gemma_reranker(out_dir: str | os.PathLike, *, seed: int = 0) -> Path:
    """A Gemma-shaped causal-LM reranker scored from the single token "Yes", and the bge-reranker-v2-gemma recipe."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]  # Gemma's ids 0-3
    backend = train_tokenizer(specials=specials, words=("Yes", "No"), byte_level=False, seed=seed)
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 2)]
    )
    torch.manual_seed(seed)
    config = GemmaConfig(vocab_size=backend.get_vocab_size(), pad_token_id=0, eos_token_id=1, bos_token_id=2,
                         **{**TINY_DECODER, "num_key_value_heads": 1})  # fmt: skip
    tokenizer = _tokenizer(backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                        unk_token="<unk>")  # fmt: skip
    return _save(out_dir, GemmaForCausalLM(config), tokenizer, BUILT_IN["BAAI/bge-reranker-v2-gemma"])


def build_nv_reranker(out_dir: str | os.PathLike, *, seed: int = 0) -> Path:
    """A Llama classifier with one logit and the NV RerankQA prompt (the NIM's llama-3.2-nv-rerankqa-1b-v2 recipe)."""
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>"]
    backend = train_tokenizer(specials=specials, words=(), byte_level=True, seed=seed)
    backend.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B", special_tokens=[("<|begin_of_text|>", 0)]
    )
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=backend.get_vocab_size(), num_labels=1, pad_token_id=2, bos_token_id=0,
                         eos_token_id=1, tie_word_embeddings=True, **TINY_DECODER)  # fmt: skip
    tokenizer = _tokenizer(backend, bos_token="<|begin_of_text|>",
                                        eos_token="<|end_of_text|>", pad_token="<|finetune_right_pad_id|>")  # fmt: skip
    return _save(out_dir, LlamaForSequenceClassification(config), tokenizer, BUILT_IN["nvidia/llama-3.2-nv-rerankqa-1b-v2"])


def train_tokenizer(*, specials: list[str], words: tuple[str, ...], byte_level: bool, seed: int,
                    vocab_size: int = 4000) -> Tokenizer:  # fmt: skip
    """A BPE tokenizer trained on sentences of English words, `words` among them often enough to be single tokens.

    `byte_level`: GPT-2/Qwen/Llama-3 style bytes; else SentencePiece style (`▁` for spaces, as Gemma's)."""
    backend = Tokenizer(models.BPE(unk_token=None if byte_level else "<unk>", byte_fallback=False))
    if byte_level:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
        backend.decoder = decoders.Metaspace(prepend_scheme="never")
        alphabet = []
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet)
    backend.train_from_iterator(_sentences(seed, words), trainer=trainer)
    for word in words:
        if len(backend.encode(word, add_special_tokens=False).ids) != 1:
            raise RuntimeError(f"the trained tokenizer splits {word!r}; train on more of it")
    return backend


def _sentences(seed: int, words: tuple[str, ...]):
    from ops.models.builder import _training_sentences  # builder lists this module's builders

    for number, sentence in enumerate(_training_sentences(seed)):
        yield f"{words[number % len(words)]} {sentence}" if words else sentence  # lines that start with a score word


def _tokenizer(backend: Tokenizer, **special_tokens: str) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_input_names=["input_ids", "attention_mask"],
                                   model_max_length=TINY_DECODER["max_position_embeddings"], **special_tokens)  # fmt: skip


def _save(out_dir: str | os.PathLike, model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, recipe: dict) -> Path:
    out = Path(out_dir)
    model.eval().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / RECIPE_FILE).write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
    return out


BUILDERS = {"qwen3-reranker": build_qwen3_reranker, "gemma-reranker": build_gemma_reranker, "nv-reranker": build_nv_reranker}
