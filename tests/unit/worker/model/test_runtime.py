"""The cross-encoder runtime against a plain transformers forward, for a BERT and an XLM-R model."""

import pytest
import torch

from shared.errors import ErrorType, RerankError
from shared.settings import Settings
from tests.reference import Reference, token_rows
from worker.model_source import ModelLoadError
from worker.model.runtime import CrossEncoder

QUERY = "what is the capital city of france"
PASSAGES = [
    "paris is the capital and most populous city of france",
    "berlin is the capital of germany " * 150,  # over 512 tokens
    "",
    "Ünïcödé text with émojis 🚀 and numbers 12345",
    "short",
]


@pytest.fixture(scope="module", params=["bert", "xlmr"])
def loaded(request):
    model_dir = request.getfixturevalue(f"{request.param}_model_dir")
    encoder = CrossEncoder.load(Settings(model=model_dir))
    return encoder, Reference(model_dir, encoder.max_seq_len)


def test_token_limit_is_what_the_position_embeddings_allow(loaded):
    encoder, _ = loaded
    assert encoder.max_seq_len == 512  # BERT: 512 positions; XLM-R: 514 positions, numbered from 2


def test_end_truncation_and_logits_match_transformers(loaded):
    encoder, reference = loaded
    pairs = encoder.encode(QUERY, PASSAGES, "END")
    for ids, passage in zip(token_rows(pairs), PASSAGES):
        assert ids == reference.encode(QUERY, passage)["input_ids"][0].tolist()
    logits = encoder.score(pairs)
    for got, want in zip(logits, reference.logits(QUERY, PASSAGES)):
        assert got == pytest.approx(want, abs=1e-4)


def test_pairs_assembled_from_the_tokenizer_s_template_match_its_own_pair_by_pair_post_processing(loaded):
    encoder, reference = loaded
    passages = PASSAGES + ["word " * 600, "x"]
    assert encoder.pairs._templates is not None  # BERT's and RoBERTa's specials are a fixed template
    for truncate in ("END", "NONE"):
        fitting = passages if truncate == "END" else [p for p in passages if len(p) < 400]
        fast = encoder.encode(QUERY, fitting, truncate)
        careful, _ = encoder.pairs._pair_by_pair(QUERY, fitting, truncate, None, 1, 0)
        assert fast.input_ids.tolist() == careful.input_ids.tolist()
        assert fast.lengths.tolist() == careful.lengths.tolist()
        assert (fast.type_ids is None) == (careful.type_ids is None)
        if fast.type_ids is not None:
            assert fast.type_ids.tolist() == careful.type_ids.tolist()
        for ids, passage in zip(token_rows(fast), fitting):
            assert ids == reference.encode(QUERY, passage)["input_ids"][0].tolist()
    assert encoder.encode(QUERY, passages, "END").lengths.max() == 512


def test_none_refuses_the_first_over_long_pair(loaded):
    encoder, reference = loaded
    with pytest.raises(RerankError) as caught:
        encoder.encode(QUERY, PASSAGES, "NONE")
    full = len(reference.tokenizer(QUERY, PASSAGES[1])["input_ids"])
    assert caught.value.type is ErrorType.VALIDATION
    assert caught.value.message.startswith("passage 1:")
    assert f"{full} tokens" in caught.value.message and "512" in caught.value.message


def test_none_names_the_first_over_long_pair_on_the_tokenizer_s_pair_path_too(loaded):
    encoder, reference = loaded
    passages = ["short", "berlin is the capital of germany " * 150, "word " * 600]
    with pytest.raises(RerankError) as caught:
        encoder.encode(QUERY, passages, "NONE")
    full = len(reference.tokenizer(QUERY, passages[1])["input_ids"])
    assert caught.value.message.startswith("passage 1:") and f"{full} tokens" in caught.value.message


def test_an_over_long_query_is_cut_and_the_passage_emptied_under_end(loaded):
    encoder, _ = loaded
    pairs = encoder.encode("lorem ipsum dolor " * 400, ["a passage", "another passage"], "END")
    assert pairs.lengths.tolist() == [512, 512]
    assert token_rows(pairs)[0] == token_rows(pairs)[1]


def test_a_lower_configured_limit_applies_but_never_a_higher_one(bert_model_dir):
    assert CrossEncoder.load(Settings(model=bert_model_dir, max_seq_len=64)).max_seq_len == 64
    assert CrossEncoder.load(Settings(model=bert_model_dir, max_seq_len=4096)).max_seq_len == 512


def test_a_missing_directory_fails_with_a_readable_message(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        CrossEncoder.load(Settings(model=str(tmp_path / "absent")))
    with pytest.raises(ModelLoadError, match="no config.json"):
        CrossEncoder.load(Settings(model=str(tmp_path)))


def test_pickled_weights_are_refused(bert_model_dir, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file

    copy = tmp_path / "pickled"
    shutil.copytree(bert_model_dir, copy)
    state = load_file(copy / "model.safetensors")
    (copy / "model.safetensors").unlink()
    torch.save(state, copy / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="only safetensors load"):
        CrossEncoder.load(Settings(model=str(copy)))


@pytest.mark.parametrize("truncate", ["END", "NONE"])
def test_max_passage_tokens_keeps_the_first_tokens_of_each_passage(loaded, truncate):
    """Cohere's max_tokens_per_doc: each passage is cut to N tokens first, so NONE no longer refuses it."""
    encoder, reference = loaded
    keep = 7
    pairs = encoder.encode(QUERY, PASSAGES, truncate, max_passage_tokens=keep)
    tokenizer = reference.tokenizer
    query_tokens = len(tokenizer(QUERY, add_special_tokens=False)["input_ids"])
    room = query_tokens + keep + tokenizer.num_special_tokens_to_add(pair=True)
    expected = [tokenizer(QUERY, p, truncation="only_second", max_length=room, return_tensors="pt") for p in PASSAGES]
    assert token_rows(pairs) == [e["input_ids"][0].tolist() for e in expected]
    assert pairs.lengths[0] == pairs.lengths[1] == room  # both passages are longer than `keep` tokens
    with torch.inference_mode():
        want = [float(reference.model(**inputs).logits[0, 0]) for inputs in expected]
    assert encoder.score(pairs) == pytest.approx(want, abs=1e-4)


def test_max_passage_tokens_then_end_still_fits_the_limit(loaded):
    encoder, _ = loaded
    pairs = encoder.encode("lorem ipsum dolor " * 400, ["a passage", "berlin " * 600], "END", max_passage_tokens=100)
    assert pairs.lengths.tolist() == [512, 512]
    capped = encoder.encode(QUERY, PASSAGES, "END", max_passage_tokens=10_000)
    assert token_rows(capped) == token_rows(encoder.encode(QUERY, PASSAGES, "END"))


def test_a_llama_classifier_scores_a_padded_batch_as_it_scores_each_pair_alone(tmp_path):
    from ops.models.builder import LLAMA_TINY, build_llama

    model_dir = build_llama(tmp_path / "llama-tiny", shape=LLAMA_TINY, dtype=torch.float32)
    encoder = CrossEncoder.load(Settings(model=str(model_dir), device="cpu"))
    assert not encoder.uses_token_type_ids
    pairs = encoder.encode(QUERY, PASSAGES, "END")
    batched = encoder.score(pairs)
    alone = [encoder.score(pairs.take([i]))[0] for i in range(len(pairs))]
    assert batched == pytest.approx(alone, abs=1e-4)
    assert len(set(round(x, 4) for x in alone)) > 1
