"""Over-long passages tokenized from a prefix under END (worker/text/prefix.py): the same ids as tokenizing them
whole, for BERT's WordPiece, XLM-R's Unigram and a prompt recipe's byte-level BPE; and the prefix really is cut."""

from __future__ import annotations

import random

import numpy as np
import pytest
from tokenizers import Tokenizer

from ops.bench.jobs import vocabulary
from shared.settings import Settings
from worker.model.runtime import CrossEncoder
from worker.text import prefix
from worker.text.prefix import CHARS_PER_TOKEN, SLACK_TOKENS, encode_prefixes


def _texts(seed: int) -> list[str]:
    """Passages around and far over the limit: words, punctuation, digits, newlines, long words, accents, emoji,
    runs of spaces, and one with no whitespace at all."""
    rng, words = random.Random(seed), vocabulary()
    extras = [",", ".", "  ", "\n", "Ünïcödé", "🚀", "12345", "x" * 40, "(paren)", "don't", "e-mail"]
    texts = []
    for count in (30, 400, 470, 500, 520, 700, 2_000, 5_000):
        texts.append(" ".join(rng.choice(words) if rng.random() < 0.85 else rng.choice(extras) for _ in range(count)))
    return texts + ["y" * 20_000, "word " * 3_000, ""]


@pytest.fixture(scope="module", params=["bert", "xlmr", "qwen3"])
def encoder(request) -> CrossEncoder:
    return CrossEncoder.load(Settings(model=request.getfixturevalue(f"{request.param}_model_dir"), device="cpu"))


@pytest.mark.parametrize("query", ["a short query", "a long query " * 60])
@pytest.mark.parametrize("max_passage_tokens", [None, 100])
def test_a_prefix_gives_the_ids_of_the_whole_passage(encoder, query, max_passage_tokens):
    texts = _texts(seed=len(query))
    cut = encoder.encode(query, texts, "END", max_passage_tokens)
    encoder.pairs.cut_long_passages = False
    try:
        whole = encoder.encode(query, texts, "END", max_passage_tokens)
    finally:
        encoder.pairs.cut_long_passages = True
    assert cut.lengths.tolist() == whole.lengths.tolist()
    assert np.array_equal(cut.input_ids, whole.input_ids)
    assert (cut.type_ids is None) == (whole.type_ids is None)
    if cut.type_ids is not None:
        assert np.array_equal(cut.type_ids, whole.type_ids)
    if max_passage_tokens is None:
        assert int(whole.lengths.max()) == encoder.max_seq_len  # the long passages did reach the limit


def test_a_long_passage_is_tokenized_from_a_prefix_and_a_short_cut_grows(bert_model_dir, monkeypatch):
    tokenizer = Tokenizer.from_file(f"{bert_model_dir}/tokenizer.json")
    tokenizer.no_padding()
    tokenizer.no_truncation()  # as the worker's private copy (worker/text/tokenization.py)
    seen: list[int] = []
    encode_batch = tokenizer.encode_batch

    class Counting:  # the tokenizer, recording how many characters each prefix batch held
        def encode_batch(self, texts, **kwargs):
            seen.append(max(map(len, texts)))
            return encode_batch(texts, **kwargs)

        def encode_batch_fast(self, texts, **kwargs):
            return tokenizer.encode_batch_fast(texts, **kwargs)

    words = "word " * 5_000
    (encoding,) = encode_prefixes(Counting(), [words], 500)
    bound = CHARS_PER_TOKEN * (500 + SLACK_TOKENS)
    assert len(seen) == 1 and bound - 5 <= seen[0] < bound < 25_000  # one prefix, cut at a space, not 25,000 characters
    assert encoding.ids == tokenizer.encode(words, add_special_tokens=False).ids[: len(encoding.ids)]
    seen.clear()
    monkeypatch.setattr(prefix, "CHARS_PER_TOKEN", 1)  # a bound too tight: the prefix is tokenized again, larger
    (encoding,) = encode_prefixes(Counting(), [words], 500)
    assert len(seen) == 4 and seen == sorted(seen) and 4_100 < seen[-1] <= 4_128  # 516, 1,032, 2,064, 4,128
    assert len(encoding.ids) >= 500 + SLACK_TOKENS
