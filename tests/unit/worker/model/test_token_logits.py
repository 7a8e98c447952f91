"""Causal-LM scoring from the needed output rows (worker/model/token_logits.py): equal to the model's own full forward,
across architectures and under right padding; never the whole vocabulary; refusals that name the recipe file."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from shared.settings import Settings
from tests.reference import PromptReference, token_rows
from worker.model.runtime import CrossEncoder, weights_mib
from worker.model.token_logits import TokenLogits
from worker.model_source import ModelLoadError
from worker.text.recipes import RECIPE_FILE, RecipeError

DECODER = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.2)  # fmt: skip
ARCHITECTURES = {
    "qwen3": lambda: transformers.Qwen3Config(**DECODER, head_dim=8, tie_word_embeddings=False),
    "mistral": lambda: transformers.MistralConfig(**DECODER),
    "gemma2-softcapped": lambda: transformers.Gemma2Config(**DECODER, head_dim=8, final_logit_softcapping=1.5),
    "cohere-scaled": lambda: transformers.CohereConfig(**DECODER, logit_scale=0.25),
    "granite-scaled": lambda: transformers.GraniteConfig(**DECODER, logits_scaling=4.0),
    "phi-head-bias": lambda: transformers.PhiConfig(**{**DECODER, "num_key_value_heads": 4}),
    "gpt2": lambda: transformers.GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                            initializer_range=0.2),  # fmt: skip
}


def right_padded(lengths: list[int], vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, vocab, (len(lengths), max(lengths)), generator=generator)
    mask = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).long()
    return input_ids * mask, mask


@pytest.mark.parametrize("negative", [7, None], ids=["positive-minus-negative", "positive-alone"])
@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_scores_equal_the_full_forward_at_each_sequence_s_last_real_token(architecture, negative):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(ARCHITECTURES[architecture]()).eval()
    scorer = TokenLogits.of(model, 42, negative)
    input_ids, mask = right_padded([9, 3, 14, 1], 300)
    with torch.inference_mode():
        got = scorer(input_ids, mask)
        want = []
        for row, length in enumerate(mask.sum(1).tolist()):
            last = model(input_ids=input_ids[row : row + 1, :length]).logits[0, -1]
            want.append(float(last[42] - (last[negative] if negative is not None else 0)))
    assert got.dtype == torch.float32
    assert got.tolist() == pytest.approx(want, abs=1e-5)
    assert len({round(x, 4) for x in want}) == 4  # distinct scores: the rows really are read per sequence


def test_bfloat16_weights_give_float32_scores_close_to_the_float32_model():
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(ARCHITECTURES["qwen3"]()).eval()
    input_ids, mask = right_padded([9, 3, 14], 300)
    with torch.inference_mode():
        exact = TokenLogits.of(model, 42, 7)(input_ids, mask)
        low = TokenLogits.of(model.to(torch.bfloat16), 42, 7)
        assert low.weight.dtype == torch.float32  # the rows stay float32 in a bfloat16 model
        assert low(input_ids, mask).dtype == torch.float32
        assert low(input_ids, mask).tolist() == pytest.approx(exact.tolist(), abs=0.1)


def test_a_150k_vocabulary_is_never_materialised():
    """512 x 512 tokens against Qwen3's 151,669 rows would be 159 GB of logits; here no allocation of the pass is
    even one row of logits per token of the batch."""
    torch.manual_seed(0)
    config = transformers.Qwen3Config(**{**DECODER, "vocab_size": 151_669, "hidden_size": 16, "num_hidden_layers": 1},
                                      head_dim=4)  # fmt: skip
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    scorer = TokenLogits.of(model, 9693, 2152)
    input_ids, mask = right_padded([64, 50, 64, 30], 151_669)
    with torch.inference_mode(), torch.profiler.profile(profile_memory=True) as profile:
        scorer(input_ids, mask)
    largest = max(event.cpu_memory_usage for event in profile.events())
    one_row_per_token = mask.numel() * 151_669 * 4
    assert 0 < largest < one_row_per_token / 100


def test_the_fleet_loads_each_causal_family_and_matches_the_contract_s_reference(qwen3_model_dir, gemma_model_dir):
    for model_dir in (qwen3_model_dir, gemma_model_dir):
        encoder = CrossEncoder.load(Settings(model=model_dir, device="cpu"))
        reference = PromptReference(model_dir, encoder.max_seq_len)
        passages = ["the station is north", "bananas", "", "north " * 700]
        pairs = encoder.encode("which way is the station", passages, "END")
        assert token_rows(pairs) == [reference.encode("which way is the station", p) for p in passages]
        assert encoder.score(pairs) == pytest.approx(reference.logits("which way is the station", passages), abs=1e-4)


def test_the_lm_head_is_dropped_once_its_rows_are_taken(qwen3_model_dir):
    encoder = CrossEncoder.load(Settings(model=qwen3_model_dir, device="cpu"))
    full = transformers.AutoModelForCausalLM.from_pretrained(qwen3_model_dir)
    head = full.get_output_embeddings().weight
    assert weights_mib(encoder.model) == pytest.approx(weights_mib(full) - head.numel() * 4 / 2**20, abs=0.01)


def with_recipe(source: str, target, recipe: dict | None) -> str:
    shutil.copytree(source, target)
    if recipe is not None:
        (target / RECIPE_FILE).write_text(json.dumps(recipe))
    return str(target)


TOKEN_LOGITS = {"score": {"type": "token_logits", "positive": "yes"}}


def test_a_token_logits_recipe_on_a_model_without_an_lm_head_is_refused_naming_the_file(
    tmp_path, bert_model_dir, nv_model_dir, qwen3_model_dir
):
    for name, source, problem in [
        ("bert", bert_model_dir, "the model is a BertForSequenceClassification"),
        ("nv", nv_model_dir, "the model is a LlamaForSequenceClassification"),
    ]:
        model_dir = with_recipe(source, tmp_path / name, {"score": {"type": "token_logits", "positive": "the"}})
        with pytest.raises(RecipeError) as caught:
            CrossEncoder.load(Settings(model=model_dir, device="cpu"))
        assert str(caught.value).startswith(f"{model_dir}/{RECIPE_FILE}: score.type token_logits needs a causal LM")
        assert problem in str(caught.value)
    headless = with_recipe(qwen3_model_dir, tmp_path / "headless", None)
    weights = load_file(f"{headless}/model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("lm_head")}, f"{headless}/model.safetensors",
              metadata={"format": "pt"})  # fmt: skip
    with pytest.raises(RecipeError, match=r"checkpoint lacks lm_head\.weight: it is not a causal LM"):
        CrossEncoder.load(Settings(model=headless, device="cpu"))


def test_a_causal_lm_without_a_token_logits_recipe_is_refused_with_a_hint(tmp_path, qwen3_model_dir):
    model_dir = with_recipe(qwen3_model_dir, tmp_path / "no-recipe", None)
    (tmp_path / "no-recipe" / RECIPE_FILE).unlink()
    with pytest.raises(ModelLoadError, match="has 2 output labels.*score.type token_logits"):
        CrossEncoder.load(Settings(model=model_dir, device="cpu"))


def test_scores_that_differ_from_the_model_s_own_forward_are_refused_at_load():
    from worker.text.recipes import parse_recipe
    from worker.model.token_logits import _check_against_full_forward

    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(ARCHITECTURES["qwen3"]()).eval()
    recipe = parse_recipe(TOKEN_LOGITS, "cfg.json")
    _check_against_full_forward(model, TokenLogits.of(model, 42, 7), recipe, 42, 7)  # the true rows pass
    with pytest.raises(RecipeError, match=r"^cfg\.json: score\.type token_logits: this architecture's logits"):
        _check_against_full_forward(model, TokenLogits.of(model, 42, 8), recipe, 42, 7)
