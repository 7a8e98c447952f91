"""The prompt encoder (API.md section 5): the parts tokenized alone, NONE and END on the whole sequence, the
instruction, specials, and the score tokens."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from shared.errors import ErrorType, RerankError
from tests.reference import token_rows
from worker.text.prompting import PromptEncoder
from worker.text.recipes import RecipeError, load_recipe, parse_recipe, score_token_ids

QUERY = "which way is the station"
PASSAGES = ["the station is two blocks north", "bananas are yellow", "", "north " * 700]


def setup(model_dir: str, limit: int = 512) -> tuple[PromptEncoder, Tokenizer]:
    tokenizer = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    return PromptEncoder(tokenizer, load_recipe(model_dir, model_dir), limit), tokenizer


def ids(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


def test_each_part_is_tokenized_alone_and_the_pair_as_one_string(qwen3_model_dir):
    encoder, tokenizer = setup(qwen3_model_dir)
    prompt = encoder.recipe.prompt
    (sequence,) = token_rows(encoder.encode(QUERY, PASSAGES[:1], "NONE"))
    pair = prompt.pair.format(instruction=encoder.recipe.instruction, query=QUERY, passage=PASSAGES[0])
    assert sequence == ids(tokenizer, prompt.prefix) + ids(tokenizer, pair) + ids(tokenizer, prompt.suffix)
    assert tokenizer.token_to_id("<|im_start|>") in sequence  # special tokens written in the text are recognised
    (instructed,) = token_rows(encoder.encode(QUERY, PASSAGES[:1], "NONE", instruction="Find the way"))
    pair = prompt.pair.format(instruction="Find the way", query=QUERY, passage=PASSAGES[0])
    assert instructed == ids(tokenizer, prompt.prefix) + ids(tokenizer, pair) + ids(tokenizer, prompt.suffix)


def test_none_names_the_passage_the_full_sequence_length_and_the_limit(qwen3_model_dir):
    encoder, tokenizer = setup(qwen3_model_dir)
    with pytest.raises(RerankError) as caught:
        encoder.encode(QUERY, PASSAGES, "NONE")
    prompt = encoder.recipe.prompt
    pair = prompt.pair.format(instruction=encoder.recipe.instruction, query=QUERY, passage=PASSAGES[3])
    full = len(ids(tokenizer, prompt.prefix + pair + prompt.suffix))
    message = caught.value.message
    assert caught.value.type is ErrorType.VALIDATION
    assert message.startswith("passage 3:") and f"is {full} tokens long" in message and "limit of 512" in message


def test_end_cuts_the_pair_part_from_its_end_and_keeps_prefix_and_suffix(qwen3_model_dir):
    encoder, tokenizer = setup(qwen3_model_dir)
    sequences = token_rows(encoder.encode(QUERY, PASSAGES, "END"))
    prompt = encoder.recipe.prompt
    prefix, suffix = ids(tokenizer, prompt.prefix), ids(tokenizer, prompt.suffix)
    long_pair = ids(tokenizer, prompt.pair.format(instruction=encoder.recipe.instruction, query=QUERY, passage=PASSAGES[3]))
    assert sequences[3] == prefix + long_pair[: 512 - len(prefix) - len(suffix)] + suffix
    assert len(sequences[3]) == 512 and all(len(s) < 512 for s in sequences[:3])


def test_end_cuts_the_query_too_when_it_leaves_no_room(qwen3_model_dir):
    encoder, tokenizer = setup(qwen3_model_dir, limit=200)
    sequences = token_rows(encoder.encode("an endless question " * 100, ["first", "second"], "END"))
    assert [len(s) for s in sequences] == [200, 200]
    assert sequences[0] == sequences[1]  # the passages were cut to nothing: the same sequence
    suffix = ids(tokenizer, encoder.recipe.prompt.suffix)
    assert sequences[0][-len(suffix):] == suffix


def test_an_instruction_for_a_prompt_without_one_is_a_400_naming_the_field(nv_model_dir):
    encoder, _ = setup(nv_model_dir)
    with pytest.raises(RerankError) as caught:
        encoder.encode(QUERY, PASSAGES[:1], "END", instruction="Find the way")
    assert caught.value.type is ErrorType.VALIDATION and caught.value.message.startswith("instruction:")


def test_special_tokens_wrap_the_whole_sequence_as_the_tokenizer_does(nv_model_dir):
    encoder, tokenizer = setup(nv_model_dir)
    (sequence,) = token_rows(encoder.encode(QUERY, PASSAGES[:1], "NONE"))
    text = f"question:{QUERY} \n \n passage:{PASSAGES[0]}"
    assert sequence == tokenizer.encode(text).ids == [tokenizer.token_to_id("<|begin_of_text|>")] + ids(tokenizer, text)
    (cut,) = token_rows(encoder.encode(QUERY, PASSAGES[3:], "END"))
    assert len(cut) == 512 and cut[0] == tokenizer.token_to_id("<|begin_of_text|>")


def test_max_passage_tokens_cuts_each_passage_to_its_first_tokens(qwen3_model_dir):
    encoder, tokenizer = setup(qwen3_model_dir)
    capped = token_rows(encoder.encode(QUERY, PASSAGES, "NONE", max_passage_tokens=5))
    first_five = tokenizer.decode(ids(tokenizer, PASSAGES[3])[:5])
    assert capped[3] == token_rows(encoder.encode(QUERY, [first_five], "NONE"))[0]
    assert capped[2] == token_rows(encoder.encode(QUERY, [""], "NONE"))[0]
    assert token_rows(encoder.encode(QUERY, PASSAGES[:3], "NONE", max_passage_tokens=500)) == token_rows(encoder.encode(QUERY, PASSAGES[:3], "NONE"))


def test_a_prompt_that_leaves_no_room_under_the_limit_is_refused_at_load(qwen3_model_dir):
    with pytest.raises(RecipeError, match="leaving no room for the pair under the token limit of 64"):
        setup(qwen3_model_dir, limit=64)


def test_score_tokens_must_be_single_tokens(qwen3_model_dir):
    tokenizer = Tokenizer.from_file(f"{qwen3_model_dir}/tokenizer.json")
    recipe = load_recipe(qwen3_model_dir, qwen3_model_dir)
    positive, negative = score_token_ids(recipe, tokenizer)
    assert (positive, negative) == (tokenizer.token_to_id("yes"), tokenizer.token_to_id("no"))
    bad = parse_recipe({"score": {"type": "token_logits", "positive": "yes", "negative": "not relevant"}}, "cfg.json")
    with pytest.raises(RecipeError, match=r"^cfg\.json: score\.negative 'not relevant' is not a single token"):
        score_token_ids(bad, tokenizer)


@pytest.mark.parametrize("family", ["qwen3", "nv"])
def test_a_long_passage_is_prompted_as_windows_of_its_own_text(family, request):
    """API.md section 6 with a prompt: each window is the passage's characters from its first token to its last."""
    encoder, tokenizer = setup(request.getfixturevalue(f"{family}_model_dir"), limit=220)
    passage = " ".join(f"stop{i} is north of the square" for i in range(40))
    got, windows = encoder.encode_windows(QUERY, ["bananas", passage], "NONE", max_windows=16, overlap=8)
    own = tokenizer.encode(passage, add_special_tokens=False)
    fill = {"query": QUERY, "instruction": encoder.recipe.instruction}
    room = 220 - encoder.fixed_tokens - len(ids(tokenizer, encoder.recipe.prompt.pair.format(passage="", **fill)))
    step = room - min(8, room // 2)
    expected_texts = ["bananas"]
    for start in range(0, len(own.ids), step):
        last = min(start + room, len(own.ids)) - 1
        expected_texts.append(passage[own.offsets[start][0] : own.offsets[last][1]])
        if start + room >= len(own.ids):
            break
    assert windows.owners.tolist() == [0] + [1] * (len(expected_texts) - 1)
    assert token_rows(got) == token_rows(encoder.encode(QUERY, expected_texts, "END"))
    assert max(got.lengths) <= 220
    with pytest.raises(RerankError, match="passage 1: it needs"):
        encoder.encode_windows(QUERY, ["bananas", passage], "NONE", max_windows=2, overlap=8)
    with pytest.raises(RerankError, match=f"the request needs {len(windows)} windows"):  # from lengths, unbuilt
        encoder.encode_windows(QUERY, ["bananas", passage], "NONE", max_windows=16, overlap=8, max_total=len(windows) - 1)


def test_tokenizing_stops_once_the_request_s_deadline_has_passed(qwen3_model_dir, monkeypatch):
    """Prompted pairs are tokenized a slice at a time; past the deadline the rest is never tokenized."""
    import time

    from worker.text import prompting

    encoder, _ = setup(qwen3_model_dir)
    tokenized = []
    real = encoder.tokenizer.encode_batch

    class Counting:
        def __getattr__(self, name):
            return getattr(real.__self__, name)

        def encode_batch(self, texts, **options):
            tokenized.extend(texts)
            time.sleep(0.2)  # a slow slice: the deadline passes during the first one
            return real(texts, **options)

    monkeypatch.setattr(encoder, "tokenizer", Counting())
    passages = ["a passage"] * (prompting.TOKENIZE_SLICE * 4)
    with pytest.raises(RerankError) as caught:
        encoder.encode("q", passages, "END", instruction="Find it", deadline=time.time() + 0.1)
    assert caught.value.type is ErrorType.TIMEOUT
    assert len(tokenized) == prompting.TOKENIZE_SLICE
    assert len(encoder.encode("q", passages[:3], "END", deadline=time.time() + 60)) == 3
