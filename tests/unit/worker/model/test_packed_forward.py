"""The own forward, over packed tokens and over padded rows, against transformers' padded forward (BERT, XLM-R)."""

import numpy as np
import pytest
import torch

from shared.settings import Settings
from tests.reference import Reference
from worker.model.packed_forward import PackedBatch, PackedForward, linear_kernel, onednn_linear, torch_linear
from worker.model.runtime import CrossEncoder, forward_layout, pad_batch
from worker.text.tokenization import EncodedPairs

QUERY = "what is the capital city of france"
PASSAGES = ["paris", "berlin is the capital of germany " * 150, "", "Ünïcödé 🚀 12345", "a b c d e f g " * 9]


@pytest.fixture(scope="module", params=["bert, packed", "xlmr, packed", "bert, padded rows", "xlmr, padded rows"])
def encoder(request):
    architecture, layout = request.param.split(", ")
    model_dir = request.getfixturevalue(f"{architecture}_model_dir")
    setting = "on" if layout == "packed" else "auto"  # the tests' models are tiny: padded rows under auto
    encoder = CrossEncoder.load(Settings(model=model_dir, device="cpu", packed_forward=setting))
    assert encoder.own_forward is not None and encoder.layout == layout
    return encoder


def test_own_logits_equal_the_padded_forward_and_a_pair_by_pair_transformers_forward(encoder, request):
    pairs = encoder.encode(QUERY, PASSAGES, "END")
    assert len(set(pairs.lengths.tolist())) == len(pairs)  # lengths differ: there is padding to skip
    packed = encoder.score(pairs)
    input_ids, attention, type_ids = pad_batch(pairs, encoder.pad_token_id)
    inputs = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention)}
    if encoder.uses_token_type_ids:
        inputs["token_type_ids"] = torch.from_numpy(type_ids)
    with torch.inference_mode():
        padded = encoder.model(**inputs).logits[:, 0].tolist()
    assert packed == pytest.approx(padded, abs=1e-5)
    model_dir = request.getfixturevalue(f"{request.node.callspec.params['encoder'].split(',')[0]}_model_dir")
    assert packed == pytest.approx(Reference(model_dir, encoder.max_seq_len).logits(QUERY, PASSAGES), abs=1e-4)


def test_a_pair_scores_the_same_alone_and_beside_longer_ones(encoder):
    pairs = encoder.encode(QUERY, PASSAGES, "END")
    together = encoder.score(pairs)
    alone = [encoder.score(pairs.take([i]))[0] for i in range(len(pairs))]
    assert together == pytest.approx(alone, abs=1e-5)


def test_packing_places_every_token_in_the_padded_layout():
    pairs = EncodedPairs(np.array([5, 6, 7, 8, 9, 10], dtype=np.int32), np.array([0, 0, 1, 0, 0, 1], dtype=np.int8),
                         np.array([3, 1, 2], dtype=np.int32))  # fmt: skip
    batch = PackedBatch.of(pairs)
    assert batch.input_ids.tolist() == [5, 6, 7, 8, 9, 10]
    assert batch.type_ids.tolist() == [0, 0, 1, 0, 0, 1]
    assert batch.positions.tolist() == [0, 1, 2, 0, 0, 1]
    assert batch.padded_index.tolist() == [0, 1, 2, 3, 6, 7]  # rows of 3: pair 1 at row 1, pair 2 at row 2
    assert batch.starts.tolist() == [0, 3, 4]
    assert PackedBatch.of(pairs, with_type_ids=False).type_ids.tolist() == [0] * 6


def test_padded_rows_lay_every_pair_out_in_a_row_of_the_longest():
    pairs = EncodedPairs(np.array([5, 6, 7, 8, 9, 10], dtype=np.int32), np.array([0, 0, 1, 0, 0, 1], dtype=np.int8),
                         np.array([3, 1, 2], dtype=np.int32))  # fmt: skip
    batch = PackedBatch.padded_rows(pairs)
    assert batch.input_ids.tolist() == [5, 6, 7, 8, 0, 0, 9, 10, 0]
    assert batch.type_ids.tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 0]
    assert batch.positions.tolist() == [0, 1, 2] * 3
    assert batch.padded_index is None and batch.starts.tolist() == [0, 3, 6] and batch.lengths.tolist() == [3, 1, 2]
    assert PackedBatch.padded_rows(pairs, with_type_ids=False).type_ids.tolist() == [0] * 9


def test_other_architectures_keep_the_padded_forward(tmp_path):
    from ops.models.builder import LLAMA_TINY, build_llama

    model_dir = build_llama(tmp_path / "llama-tiny", shape=LLAMA_TINY, dtype=torch.float32)
    for setting in ("auto", "on"):
        encoder = CrossEncoder.load(Settings(model=str(model_dir), device="cpu", packed_forward=setting))
        assert encoder.own_forward is None and encoder.layout == "transformers"


def test_the_setting_chooses_the_forward(bert_model_dir):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert forward_layout("auto", cpu, 384) == "packed" and forward_layout("auto", cpu, 256) == "packed"
    assert forward_layout("auto", cpu, 128) == "padded rows"  # a small model: the packed layout is slower there
    assert forward_layout("auto", cuda, 384) == "transformers" and forward_layout("on", cuda, 32) == "packed"
    assert forward_layout("off", cpu, 384) == forward_layout("off", cpu, 32) == "transformers"
    layouts = {setting: CrossEncoder.load(Settings(model=bert_model_dir, device="cpu", packed_forward=setting)).layout
               for setting in ("off", "auto", "on")}  # fmt: skip
    assert layouts == {"off": "transformers", "auto": "padded rows", "on": "packed"}  # hidden size 32


def _error_against_float32(linear, dtype: torch.dtype, gelu: bool) -> float:
    """Largest error of `linear` in `dtype` against the same product in float32, on a fresh random problem."""
    generator = torch.Generator().manual_seed(7)
    x, weight, bias = (torch.randn(*shape, generator=generator).to(dtype) for shape in ((29, 64), (40, 64), (40,)))
    exact = torch_linear(x.float(), weight.float(), bias.float(), gelu)
    with torch.inference_mode():
        return float((linear(x, weight, bias, gelu).float() - exact).abs().max())


def test_linear_layers_take_onednn_on_a_cpu_where_it_is_as_accurate():
    cpu = torch.device("cpu")
    if torch.backends.mkldnn.is_available():
        assert linear_kernel(cpu, torch.float32) is onednn_linear
    # bfloat16 takes oneDNN only where it is as accurate as F.linear: on CPUs with native bfloat16 (AVX-512 BF16,
    # AMX) it is; on an AVX2 CPU oneDNN's emulation rounds differently and torch's kernel is kept
    if linear_kernel(cpu, torch.bfloat16) is onednn_linear:
        for gelu in (False, True):
            onednn, torch_own = (_error_against_float32(k, torch.bfloat16, gelu) for k in (onednn_linear, torch_linear))
            assert onednn <= 2 * torch_own + 1e-4
    else:
        assert linear_kernel(cpu, torch.bfloat16) is torch_linear
    assert linear_kernel(cpu, torch.float16) is torch_linear
    assert linear_kernel(torch.device("cuda"), torch.float32) is torch_linear
    x, weight, bias = torch.randn(7, 16), torch.randn(24, 16), torch.randn(24)
    for gelu in (False, True):
        assert torch.allclose(onednn_linear(x, weight, bias, gelu), torch_linear(x, weight, bias, gelu), atol=1e-5)


def test_bfloat16_on_a_cpu_scores_close_to_float32_and_keeps_the_order(bert_model_dir):
    full, half = (CrossEncoder.load(Settings(model=bert_model_dir, device="cpu", dtype=dtype, packed_forward="on"))
                  for dtype in ("float32", "bfloat16"))  # fmt: skip
    assert half.layout == "packed" and next(half.model.parameters()).dtype == torch.bfloat16
    passages = [f"paris is the capital of {word}" for word in ("france", "spain", "the river", "nothing")] + PASSAGES
    pairs = full.encode(QUERY, passages, "END")
    want, got = np.array(full.score(pairs)), np.array(half.score(pairs))
    spread = want.max() - want.min()
    assert np.abs(got - want).max() < 0.05 * spread
    assert np.argmax(got) == np.argmax(want)


def test_another_activation_is_applied_after_the_matmul(bert_model_dir):
    from transformers import AutoModelForSequenceClassification

    encoder = CrossEncoder.load(Settings(model=bert_model_dir, device="cpu"))
    model = AutoModelForSequenceClassification.from_pretrained(bert_model_dir, hidden_act="gelu_new").eval()
    packed = PackedForward.of(model)
    pairs = encoder.encode(QUERY, PASSAGES, "END")
    input_ids, attention, type_ids = pad_batch(pairs, encoder.pad_token_id)
    with torch.inference_mode():
        want = model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(attention),
                     token_type_ids=torch.from_numpy(type_ids)).logits[:, 0]  # fmt: skip
        got = packed.logits(PackedBatch.of(pairs), torch.device("cpu"), lambda tensor, device: tensor)[:, 0]
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, torch.tensor(encoder.score(pairs)), atol=1e-5)  # gelu_new does change them
