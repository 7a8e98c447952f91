"""Scores read from a causal language model's token logits at the last position, computing only the rows needed.

A causal-LM reranker (Qwen3-Reranker, bge-reranker-v2-gemma, mxbai-rerank-v2) scores a pair by the logits
of one or two tokens at the last position of its prompted sequence. Its LM head would compute a logit for
every token of the vocabulary at every position: for 512 sequences of 512 tokens and a 151,669-token
vocabulary, 159 GB of float32. Here the decoder's last hidden state of each sequence meets only the rows
of the output layer the score needs; z(positive) - z(negative) is one dot product with the float32 vector
W[positive] - W[negative] (what vLLM does with the two lm_head rows). The rows are computed in float32
whatever the model's dtype, as the classifier's output layer is (worker/model/runtime.py, logit_layer_in_float32).

`load_token_logits` checks at load that these scores equal the model's own full forward on a probe batch,
so an architecture whose output layer is more than a linear map of the last hidden state is refused
rather than scored wrongly.
"""

from __future__ import annotations

import logging

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

from worker.model_source import from_pretrained
from worker.text.recipes import Recipe, score_token_ids

log = logging.getLogger(__name__)

_CAUSAL_ARCHITECTURES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


class TokenLogits(torch.nn.Module):
    """A decoder and the output rows of its LM head that a score needs: `forward(input_ids, attention_mask)`
    takes [B, T] right-padded int64 ids and their mask and returns the B scores, float32."""

    def __init__(
        self, decoder: torch.nn.Module, weight: torch.Tensor, bias: torch.Tensor | None, softcap: float | None
    ) -> None:
        super().__init__()
        self.decoder = decoder
        self.config = decoder.config
        self.register_buffer("weight", weight)  # [1 or 2, hidden] float32
        self.register_buffer("bias", bias)  # [1 or 2] float32, or None
        self.softcap = softcap

    @classmethod
    def of(cls, model: torch.nn.Module, positive: int, negative: int | None) -> "TokenLogits":
        """The scorer of a loaded causal LM for z(positive) - z(negative), or z(positive) when `negative` is None.

        Output scalings that transformers applies to the logits are kept: Cohere's `logit_scale` and Granite's
        `logits_scaling` fold into the rows; Gemma-2's `final_logit_softcapping` is applied to each row's logit
        before the difference (so the two rows stay apart).
        """
        head, config = model.get_output_embeddings(), model.config
        scale = float(getattr(config, "logit_scale", None) or 1.0) / float(getattr(config, "logits_scaling", None) or 1.0)
        softcap = getattr(config, "final_logit_softcapping", None)
        rows = [positive] if negative is None else [positive, negative]
        weight = head.weight.detach()[rows].float() * scale
        bias = None if getattr(head, "bias", None) is None else head.bias.detach()[rows].float() * scale
        if negative is not None and not softcap:  # one vector: h . w_pos - h . w_neg = h . (w_pos - w_neg)
            weight = (weight[0] - weight[1])[None]
            bias = None if bias is None else (bias[0] - bias[1])[None]
        return cls(model.base_model, weight.contiguous(), bias, softcap)

    def forward(
        self, input_ids: torch.Tensor, attention_mask, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`attention_mask`: the [B, T] padding mask, or what the decoder takes as it is (a 4-D mask, a mapping
        by layer type, None) with each row's length in `lengths`."""
        hidden = self.decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        if lengths is None:
            lengths = attention_mask.sum(dim=1)
        last = lengths - 1  # right padding: each row's last real token
        state = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
        logits = state @ self.weight.T
        if self.bias is not None:
            logits = logits + self.bias
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits[:, 0] - logits[:, 1] if logits.shape[1] == 2 else logits[:, 0]


def load_token_logits(
    model_dir: str, *, config, recipe: Recipe, tokenizer: Tokenizer, dtype: torch.dtype, device: torch.device,
    trust_remote_code: bool,
) -> TokenLogits:  # fmt: skip
    """The TokenLogits scorer of the causal LM in `model_dir` on `device`; RecipeError naming the recipe when its
    tokens are not single tokens or the model has no LM head. The full LM head is dropped once its rows are taken."""
    positive, negative = score_token_ids(recipe, tokenizer)
    architectures = getattr(config, "architectures", None) or []
    if architectures and not any(name.endswith(_CAUSAL_ARCHITECTURES) for name in architectures):
        raise recipe.fail(f"score.type token_logits needs a causal LM with an LM head, but the model is a "
                          f"{architectures[0]}; use score.type classifier for it")  # fmt: skip
    try:
        model, info = from_pretrained(AutoModelForCausalLM, model_dir, config=config, dtype=dtype,
                                      output_loading_info=True, trust_remote_code=trust_remote_code)  # fmt: skip
    except ValueError as exc:
        if "Unrecognized configuration class" not in str(exc):
            raise
        raise recipe.fail(f"score.type token_logits needs a causal LM with an LM head, but transformers has no "
                          f"causal-LM class for model type {config.model_type!r}") from None  # fmt: skip
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise recipe.fail(f"score.type token_logits needs the model's LM head, but its checkpoint lacks "
                          f"{missing[0]}{f' and {len(missing) - 1} more weights' if len(missing) > 1 else ''}: "
                          "it is not a causal LM")  # fmt: skip
    model.eval().to(device)
    scorer = TokenLogits.of(model, positive, negative)
    _check_against_full_forward(model, scorer, recipe, positive, negative)
    return scorer


def _check_against_full_forward(model, scorer: TokenLogits, recipe: Recipe, positive: int, negative: int | None) -> None:
    """Refuse an architecture whose own logits (full vocabulary) the scorer does not reproduce on a probe batch
    of two right-padded sequences."""
    device = next(scorer.parameters()).device
    vocab = model.get_output_embeddings().weight.shape[0]
    ids = (torch.arange(8, device=device) * 7919 + 11) % vocab
    input_ids = torch.stack([ids, ids.roll(3)])
    mask = torch.ones_like(input_ids)
    mask[1, 5:] = 0
    with torch.inference_mode():
        got = scorer(input_ids, mask)
        expected, size = [], []
        for row, length in ((0, 8), (1, 5)):
            logits = model(input_ids=input_ids[row : row + 1, :length], use_cache=False).logits[0, -1].float()
            chosen = logits[[positive] if negative is None else [positive, negative]]
            expected.append(chosen[0] - chosen[1] if negative is not None else chosen[0])
            size.append(chosen.abs().sum())
        expected_t, size_t = torch.stack(expected), torch.stack(size)
    relative = 1e-4 if next(model.parameters()).dtype == torch.float32 else 2e-2  # bfloat16 logits: 8-bit mantissa
    error = (got - expected_t).abs()
    if bool((error > 1e-3 + relative * size_t).any()):
        raise recipe.fail(
            f"score.type token_logits: this architecture's logits are not a linear layer over its last hidden "
            f"state (the rows differ from its own forward by {float(error.max()):.3g}), so it cannot be scored here"
        )
