"""Recipes (API.md section 5): where they come from, and the one-line refusal of a bad one."""

from __future__ import annotations

import json

import pytest

from worker.text.recipes import BUILT_IN, PLAIN, RECIPE_FILE, RecipeError, built_in_id, load_recipe, parse_recipe

QWEN = BUILT_IN["Qwen/Qwen3-Reranker-0.6B"]


def write(path, recipe) -> str:
    path.write_text(recipe if isinstance(recipe, str) else json.dumps(recipe))
    return str(path)


def test_sources_in_the_contract_s_order(tmp_path):
    model_dir = tmp_path / "Qwen3-Reranker-0.6B"  # named like a known repository
    model_dir.mkdir()
    assert load_recipe("Qwen/Qwen3-Reranker-0.6B", str(model_dir)).origin.endswith("Qwen/Qwen3-Reranker-0.6B")
    assert load_recipe(str(model_dir), str(model_dir)).score.positive == "yes"  # the directory's name
    in_dir = write(model_dir / RECIPE_FILE, {"score": {"type": "token_logits", "positive": "ok"}})
    assert load_recipe("Qwen/Qwen3-Reranker-0.6B", str(model_dir)).origin == in_dir
    override = write(tmp_path / "override.json", {"prompt": {"pair": "{query} | {passage}"}})
    recipe = load_recipe("Qwen/Qwen3-Reranker-0.6B", str(model_dir), override)
    assert recipe.origin == override and recipe.score.type == "classifier" and recipe.prompt.pair == "{query} | {passage}"
    plain_dir = tmp_path / "my-cross-encoder"
    plain_dir.mkdir()
    assert load_recipe(str(plain_dir), str(plain_dir)) is PLAIN
    assert built_in_id("acme/Qwen3-Reranker-0.6B") is None  # another owner's repository is not the known model


def test_every_built_in_recipe_is_valid_and_cites_the_card_s_tokens():
    recipes = {hub_id: parse_recipe(data, hub_id) for hub_id, data in BUILT_IN.items()}
    assert recipes["Qwen/Qwen3-Reranker-8B"].takes_instruction
    assert recipes["Qwen/Qwen3-Reranker-4B"].instruction.startswith("Given a web search query")
    gemma, mxbai = recipes["BAAI/bge-reranker-v2-gemma"].score, recipes["mixedbread-ai/mxbai-rerank-large-v2"].score
    assert (gemma.positive, gemma.negative, mxbai.positive, mxbai.negative) == ("Yes", None, "1", "0")
    nv = recipes["nvidia/llama-nemotron-rerank-1b-v2"]
    assert nv.prompt.pair == "question:{query} \n \n passage:{passage}"
    assert nv.special_tokens and nv.score.type == "classifier"


@pytest.mark.parametrize(
    "recipe, problem",
    [
        ({**QWEN, "temperature": 0.5}, "unknown key 'temperature' in the recipe"),
        ({"prompt": {"pair": "{query} {passage}", "middle": ""}}, "unknown key 'middle' in prompt"),
        ({"score": {"type": "token_logits", "positive": "yes", "neutral": "maybe"}}, "unknown key 'neutral' in score"),
        ({"prompt": {"pair": "<Document>: {passage}\n<Query>: {query}"}}, "{passage} must be the last placeholder"),
        ({"prompt": {"pair": "{passage} {query} {passage}"}}, "{passage} more than once"),
        ({"prompt": {"pair": "{query} {document}"}}, "unknown placeholder {document}"),
        ({"prompt": {"pair": "{query} only"}}, "no {passage} placeholder"),
        ({"prompt": {"prefix": "{query}"}}, 'prompt has no "pair"'),
        ({"prompt": {"prefix": "{instruction}\n", "pair": "{query} {passage}"}}, "prompt.prefix holds {instruction}"),
        ({"prompt": {"pair": "{query} {passage"}}, "not a valid template"),
        ({"prompt": {"pair": "{query!r} {passage}"}}, "format spec or conversion"),
        ({"prompt": {"pair": "{query} {passage}"}, "instruction": "Rank."}, "no {instruction} placeholder"),
        ({"prompt": {"pair": 5}}, "prompt.pair must be a string, not 5"),
        ({"special_tokens": "yes"}, "special_tokens must be true or false"),
        ({"score": {"type": "logits"}}, 'score.type must be "classifier" or "token_logits"'),
        ({"score": {"type": "token_logits"}}, "needs score.positive"),
        ({"score": {"type": "token_logits", "positive": "yes", "negative": ""}}, "score.negative is empty"),
        ({"score": {"positive": "yes"}}, "score.positive is only for score.type token_logits"),
        ([QWEN], "the recipe must be a JSON object, not list"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_rerank_config_is_refused_in_one_line_naming_the_file(tmp_path, recipe, problem):
    path = write(tmp_path / RECIPE_FILE, recipe)
    with pytest.raises(RecipeError) as caught:
        load_recipe(str(tmp_path), str(tmp_path))
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_a_missing_model_config_file_is_named(tmp_path):
    with pytest.raises(RecipeError, match=r"^RERANK_MODEL_CONFIG=.*absent\.json: no such file$"):
        load_recipe("any", str(tmp_path), str(tmp_path / "absent.json"))


def test_literal_braces_and_an_absent_default_instruction():
    recipe = parse_recipe({"prompt": {"pair": "{{json}} {instruction} {query} {passage}"}}, "inline")
    assert recipe.takes_instruction and recipe.instruction == ""
    assert not parse_recipe({"prompt": {"pair": "{query}{passage}"}}, "inline").takes_instruction
