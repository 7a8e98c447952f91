"""Model recipes (API.md section 5): how a (query, passage) pair becomes the model's input, how its score is read.

A recipe comes from, first found wins: the JSON file RERANK_MODEL_CONFIG names, `rerank_config.json` in the
model directory, a built-in recipe for a known hub id, else the plain cross-encoder (the tokenizer's own pair
encoding, the classifier's one logit). Every source goes through `parse_recipe`, which refuses a bad one with
one line naming where it came from and what is wrong. No torch here: only text and JSON.
"""

from __future__ import annotations

import json
import os
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from worker.model_source import ModelLoadError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

RECIPE_FILE = "rerank_config.json"
PLACEHOLDERS = ("query", "passage", "instruction")
_KEYS = {"prompt", "instruction", "special_tokens", "score"}
_PROMPT_KEYS = {"prefix", "pair", "suffix"}
_SCORE_KEYS = {"type", "positive", "negative"}


class RecipeError(ModelLoadError):
    """A recipe that cannot be served; the message is one line: where it came from, then the problem."""


@dataclass(frozen=True)
class Prompt:
    """The model's input is tokens(prefix) + tokens(pair filled in) + tokens(suffix), each tokenized alone."""

    pair: str
    prefix: str = ""
    suffix: str = ""

    @property
    def takes_instruction(self) -> bool:
        return "instruction" in _fields(self.pair)


@dataclass(frozen=True)
class Score:
    """`classifier`: the model's one logit. `token_logits`: z(positive) - z(negative), or z(positive) alone,
    read at the last position of the sequence."""

    type: Literal["classifier", "token_logits"] = "classifier"
    positive: str | None = None
    negative: str | None = None


@dataclass(frozen=True)
class Recipe:
    prompt: Prompt | None = None  # None: the tokenizer's own pair encoding
    instruction: str = ""  # the default {instruction}
    special_tokens: bool = False  # wrap the whole prompted sequence with the tokenizer's specials
    score: Score = field(default_factory=Score)
    origin: str = "the plain cross-encoder recipe"  # where it came from: a file, or the built-in recipe of a hub id

    @property
    def takes_instruction(self) -> bool:
        return self.prompt is not None and self.prompt.takes_instruction

    def fail(self, problem: str) -> RecipeError:
        """The error for a problem found later (with the tokenizer or the weights), naming the recipe's source."""
        return RecipeError(f"{self.origin}: {problem}")


PLAIN = Recipe()

_QWEN3_RERANKER = {
    # Qwen/Qwen3-Reranker-{0.6B,4B,8B} model card ("Transformers Usage"): prefix, format_instruction and
    # suffix, each tokenized alone; the score is the "yes" against "no" logit at the last position.
    "prompt": {
        "prefix": "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
        'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n',
        "pair": "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {passage}",
        "suffix": "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    },
    "instruction": "Given a web search query, retrieve relevant passages that answer the query",
    "score": {"type": "token_logits", "positive": "yes", "negative": "no"},
}
_BGE_RERANKER_GEMMA = {
    # BAAI/bge-reranker-v2-gemma model card (get_inputs): <bos> "A: {query}" "\n" "B: {passage}" "\n" prompt;
    # the score is the logit of "Yes" at the last position.
    "prompt": {
        "pair": "A: {query}\nB: {passage}",
        "suffix": "\nGiven a query A and a passage B, determine whether the passage contains an answer to the query "
        "by providing a prediction of either 'Yes' or 'No'.",
    },
    "special_tokens": True,
    "score": {"type": "token_logits", "positive": "Yes"},
}
_MXBAI_RERANK_V2 = {
    # mixedbread-ai/mxbai-rerank-{base,large}-v2 (model card and the mxbai-rerank package, mxbai_rerank_v2.py):
    # chat prefix, "query: ..." "\n" "document: ...", "\n", task prompt, chat suffix; "1" against "0".
    # Its optional "instruction: ...\n" line has no place in a fixed pair template, so it takes no instruction.
    "prompt": {
        "prefix": "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n",
        "pair": "query: {query}\ndocument: {passage}",
        "suffix": "\nYou are a search relevance expert who evaluates how well documents match search queries. For each "
        "query-document pair, carefully analyze the semantic relationship between them, then provide your binary "
        "relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:<|im_end|>\n<|im_start|>assistant\n",
    },
    "score": {"type": "token_logits", "positive": "1", "negative": "0"},
}
_NV_RERANKQA = {
    # nvidia/llama-3.2-nv-rerankqa-1b-v2 and nvidia/llama-nemotron-rerank-1b-v2 model cards: the classifier reads
    # tokenizer(f"question:{query} \n \n passage:{passage}"), the tokenizer adding its own BOS.
    "prompt": {"pair": "question:{query} \n \n passage:{passage}"},
    "special_tokens": True,
    "score": {"type": "classifier"},
}
BUILT_IN: dict[str, dict] = {
    "Qwen/Qwen3-Reranker-0.6B": _QWEN3_RERANKER,
    "Qwen/Qwen3-Reranker-4B": _QWEN3_RERANKER,
    "Qwen/Qwen3-Reranker-8B": _QWEN3_RERANKER,
    "BAAI/bge-reranker-v2-gemma": _BGE_RERANKER_GEMMA,
    "mixedbread-ai/mxbai-rerank-base-v2": _MXBAI_RERANK_V2,
    "mixedbread-ai/mxbai-rerank-large-v2": _MXBAI_RERANK_V2,
    "nvidia/llama-3.2-nv-rerankqa-1b-v2": _NV_RERANKQA,
    "nvidia/llama-nemotron-rerank-1b-v2": _NV_RERANKQA,
}
_BY_REPO_NAME = {hub_id.split("/")[1]: hub_id for hub_id in BUILT_IN}


def recipe_json(recipe: Recipe) -> dict:
    """The rerank_config.json form of a recipe: what `parse_recipe` reads back (the engine hands it on)."""
    data: dict = {"special_tokens": recipe.special_tokens, "score": {"type": recipe.score.type}}
    if recipe.prompt is not None:
        data["prompt"] = {"prefix": recipe.prompt.prefix, "pair": recipe.prompt.pair, "suffix": recipe.prompt.suffix}
        if recipe.takes_instruction:
            data["instruction"] = recipe.instruction
    for name in ("positive", "negative"):
        if getattr(recipe.score, name) is not None:
            data["score"][name] = getattr(recipe.score, name)
    return data


def load_recipe(source: str, model_dir: str, config_file: str | None = None) -> Recipe:
    """The recipe of the model `source` (a hub id or a directory) whose files are in `model_dir`."""
    if config_file:
        return parse_recipe(_read_json(config_file, f"RERANK_MODEL_CONFIG={config_file}"), config_file)
    in_dir = os.path.join(model_dir, RECIPE_FILE)
    if os.path.isfile(in_dir):
        return parse_recipe(_read_json(in_dir, in_dir), in_dir)
    hub_id = built_in_id(source)
    if hub_id is not None:
        return parse_recipe(BUILT_IN[hub_id], f"the built-in recipe for {hub_id}")
    return PLAIN


def built_in_id(source: str) -> str | None:
    """The known hub id `source` names: the id itself, or a directory named like its repository."""
    if source in BUILT_IN:
        return source
    if os.path.isdir(source):
        return _BY_REPO_NAME.get(os.path.basename(os.path.normpath(source)))
    return None


def parse_recipe(data: object, origin: str) -> Recipe:
    """A checked Recipe from the JSON form of rerank_config.json; RecipeError("<origin>: <problem>") otherwise."""

    def fail(problem: str) -> RecipeError:
        return RecipeError(f"{origin}: {problem}")

    section = _checked_keys(data, _KEYS, "the recipe", fail)
    prompt = None
    if section.get("prompt") is not None:
        parts = _checked_keys(section["prompt"], _PROMPT_KEYS, "prompt", fail)
        if "pair" not in parts:
            raise fail('prompt has no "pair": give the template that holds {query} and {passage}')
        texts = {name: _string(parts, name, f"prompt.{name}", fail) for name in parts}
        _check_pair(texts["pair"], fail)
        for name in ("prefix", "suffix"):
            placed = [f"{{{p}}}" for p in PLACEHOLDERS if f"{{{p}}}" in texts.get(name, "")]
            if placed:
                raise fail(f"prompt.{name} holds {placed[0]}; placeholders belong in prompt.pair")
        prompt = Prompt(**texts)
    instruction = _string(section, "instruction", "instruction", fail) if "instruction" in section else None
    if instruction is not None and not (prompt and prompt.takes_instruction):
        raise fail("instruction is set but prompt.pair has no {instruction} placeholder")
    special_tokens = section.get("special_tokens", False)
    if not isinstance(special_tokens, bool):
        raise fail(f"special_tokens must be true or false, not {special_tokens!r}")
    return Recipe(prompt, instruction or "", special_tokens, _parse_score(section.get("score"), fail), origin)


def _parse_score(data: object, fail) -> Score:
    if data is None:
        return Score()
    score = _checked_keys(data, _SCORE_KEYS, "score", fail)
    kind = score.get("type", "classifier")
    if kind not in ("classifier", "token_logits"):
        raise fail(f'score.type must be "classifier" or "token_logits", not {kind!r}')
    tokens = {name: _string(score, name, f"score.{name}", fail) for name in ("positive", "negative") if name in score}
    if kind == "classifier" and tokens:
        raise fail(f"score.{next(iter(tokens))} is only for score.type token_logits")
    if kind == "token_logits" and not tokens.get("positive"):
        raise fail('score.type token_logits needs score.positive, the token whose logit is the score (e.g. "yes")')
    if tokens.get("negative") == "":
        raise fail("score.negative is empty: leave it out to score the positive token alone")
    return Score(kind, tokens.get("positive"), tokens.get("negative"))


def _check_pair(pair: str, fail) -> None:
    fields = _fields(pair, fail)
    unknown = [name for name in fields if name not in PLACEHOLDERS]
    if unknown:
        raise fail(f"prompt.pair has an unknown placeholder {{{unknown[0]}}}; known: {{query}}, {{passage}}, "
                   "{instruction} (write {{ and }} for literal braces)")  # fmt: skip
    for name in ("query", "passage"):
        if name not in fields:
            raise fail(f"prompt.pair has no {{{name}}} placeholder")
    if fields.count("passage") > 1:
        raise fail("prompt.pair holds {passage} more than once")
    if fields[-1] != "passage":
        raise fail(f"{{passage}} must be the last placeholder of prompt.pair, but {{{fields[-1]}}} follows it "
                   "(END truncation cuts the pair from its end)")  # fmt: skip


def _fields(template: str, fail=None) -> list[str]:
    """The placeholder names of a str.format template, in order."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        if fail is None:
            raise
        raise fail(f"prompt.pair is not a valid template ({exc}); write {{{{ and }}}} for literal braces") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if fail is not None and (spec or conversion):
            raise fail(f"prompt.pair: {{{name}}} may not carry a format spec or conversion")
        names.append(name)
    return names


def _checked_keys(data: object, known: set[str], what: str, fail) -> dict:
    if not isinstance(data, dict):
        raise fail(f"{what} must be a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - known)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} in {what} (known: {', '.join(sorted(known))})")
    return data


def _string(data: dict, key: str, what: str, fail) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise fail(f"{what} must be a string, not {json.dumps(value)}")
    return value


def _read_json(path: str, name: str) -> object:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise RecipeError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{name}: cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise RecipeError(f"{name}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None


def score_token_ids(recipe: Recipe, tokenizer: "Tokenizer") -> tuple[int, int | None]:
    """The vocabulary ids of a token_logits recipe's `positive` and `negative` (None if not given).

    Each must tokenize, alone and without specials, to exactly one token (as the model cards look them up)."""
    ids: list[int | None] = []
    for name in ("positive", "negative"):
        text = getattr(recipe.score, name)
        tokens = tokenizer.encode(text, add_special_tokens=False).ids if text is not None else [None]
        if len(tokens) != 1:
            raise recipe.fail(f"score.{name} {text!r} is not a single token of the model's vocabulary "
                              f"(it is {len(tokens)} tokens)")  # fmt: skip
        ids.append(tokens[0])
    return ids[0], ids[1]  # type: ignore[return-value]
