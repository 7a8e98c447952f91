"""Device, dtype and token-budget selection, and host-to-device copies, proven on a CPU-only host.

What a GPU worker does differently is decided here and in `CrossEncoder.score`; these tests pin those
decisions (bf16/fp16, pinned memory and non-blocking copies only on CUDA) without a GPU.
"""

import numpy as np
import pytest
import torch

from shared.errors import RerankError
from shared.settings import Settings
from worker.model import runtime as runtime_module
from worker.model.device import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, batch_tokens, resolve_device, resolve_dtype, to_device
from worker.model.runtime import CrossEncoder, pad_batch
from worker.text.tokenization import EncodedPairs

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")


@pytest.fixture
def fake_gpu(monkeypatch):
    """torch reports one CUDA device, with or without bf16 support."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    support = {"bf16": True}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: support["bf16"])
    return support


def test_auto_takes_the_gpu_when_one_is_visible_and_cpu_stays_cpu(fake_gpu):
    assert resolve_device("auto") == CUDA
    assert resolve_device("cuda") == CUDA
    assert resolve_device("cpu") == CPU


def test_without_a_gpu_auto_is_the_cpu_and_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == CPU
    with pytest.raises(RerankError):
        resolve_device("cuda")


def test_auto_dtype_is_fp32_on_cpu_bf16_on_gpus_that_have_it_else_fp16(fake_gpu):
    assert resolve_dtype("auto", CPU) is torch.float32
    assert resolve_dtype("auto", CUDA) is torch.bfloat16
    fake_gpu["bf16"] = False
    assert resolve_dtype("auto", CUDA) is torch.float16
    assert resolve_dtype("float32", CUDA) is torch.float32


def test_token_budget_is_large_on_gpu_small_on_cpu_unless_set():
    assert batch_tokens(None, CUDA) == GPU_BATCH_TOKENS == 16384
    assert batch_tokens(None, CPU) == CPU_BATCH_TOKENS == 2048
    assert batch_tokens(4096, CPU) == batch_tokens(4096, CUDA) == 4096


class RecordingTensor:
    """Stands in for a host tensor: records pinning and copies."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def pin_memory(self):
        self.calls.append(("pin_memory",))
        return self

    def to(self, device, non_blocking=False):
        self.calls.append(("to", device, non_blocking))
        return self


def test_cuda_copies_go_through_pinned_memory_without_blocking():
    tensor = RecordingTensor()
    assert to_device(tensor, CUDA) is tensor
    assert tensor.calls == [("pin_memory",), ("to", CUDA, True)]


def test_cpu_tensors_are_neither_pinned_nor_copied():
    tensor = RecordingTensor()
    assert to_device(tensor, CPU) is tensor
    assert tensor.calls == []


@pytest.mark.parametrize(
    ("forward", "inputs"),
    [("off", 3), ("on", 6), ("auto", 5)],  # ids, mask, segments; own forward: ids, segments, positions, lengths,
)  # starts, and for packed tokens their place in the padded layout (auto: padded rows for the tiny model)
def test_score_sends_every_input_through_to_device(bert_model_dir, monkeypatch, forward, inputs):
    encoder = CrossEncoder.load(Settings(model=bert_model_dir, device="cpu", packed_forward=forward))
    moved = []

    def record(tensor, device):
        moved.append((tensor.dtype, device))
        return tensor

    monkeypatch.setattr(runtime_module, "to_device", record)
    encoder.score(encoder.encode("query", ["one passage", "another, longer passage"], "END"))
    assert moved == [(torch.int64, CPU)] * inputs


def test_bf16_weights_score_close_to_fp32_on_this_cpu(bert_model_dir):
    fp32 = CrossEncoder.load(Settings(model=bert_model_dir, device="cpu"))
    bf16 = CrossEncoder.load(Settings(model=bert_model_dir, device="cpu", dtype="bfloat16"))
    assert next(bf16.model.parameters()).dtype is torch.bfloat16
    pairs = fp32.encode("capital of france", ["paris is the capital", "bananas are yellow", ""], "END")
    assert bf16.score(pairs) == pytest.approx(fp32.score(pairs), abs=0.05)


@pytest.mark.parametrize("architecture", ["bert, packed", "bert, padded rows", "bert, transformers", "llama"])
def test_in_bf16_logits_are_not_rounded_to_bf16(bert_model_dir, tmp_path, architecture):
    """The output layer runs in float32: near-equal passages keep distinct logits, as in float32."""
    model_dir = bert_model_dir
    if architecture == "llama":
        from ops.models.builder import LLAMA_TINY, build_llama

        model_dir = str(build_llama(tmp_path / "llama-tiny", shape=LLAMA_TINY, dtype=torch.float32))
    forward = {"bert, packed": "on", "bert, transformers": "off"}.get(architecture, "auto")
    fp32, bf16 = (CrossEncoder.load(Settings(model=model_dir, device="cpu", dtype=dtype, packed_forward=forward))
                  for dtype in ("float32", "bfloat16"))  # fmt: skip
    assert bf16.layout == {"llama": "transformers"}.get(architecture, architecture.removeprefix("bert, "))
    passages = [f"paris is the capital of france and {word}" for word in "a b c d e f g h i j k l".split()]
    pairs = fp32.encode("what is the capital city of france", passages, "END")
    full, half = fp32.score(pairs), bf16.score(pairs)
    assert len(set(half)) == len(set(full)) == len(passages)
    assert any(torch.tensor(logit).bfloat16().item() != logit for logit in half)  # finer than bf16's steps
    assert next(bf16.model.parameters()).dtype is torch.bfloat16  # the rest of the model stays in bf16


def test_models_load_with_sdpa_attention(bert_model_dir):
    encoder = CrossEncoder.load(Settings(model=bert_model_dir, device="cpu"))
    assert encoder.model.config._attn_implementation == "sdpa"


def test_pad_batch_right_pads_ids_mask_and_segments():
    pairs = EncodedPairs(np.array([101, 7, 102, 101, 5, 102, 9, 102], dtype=np.int32),
                         np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int8), np.array([3, 5], dtype=np.int32))
    ids, mask, types = pad_batch(pairs, pad_token_id=0)
    assert ids.tolist() == [[101, 7, 102, 0, 0], [101, 5, 102, 9, 102]]
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert types.tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]
    assert ids.dtype == mask.dtype == types.dtype == np.int64


def test_passes_are_sized_by_time_on_cuda_only():
    from worker.model.device import pass_sizing

    assert pass_sizing(8.0, 16_384, torch.device("cuda", 0)) == {"forward_seconds": 0.008, "max_sized_tokens": 131_072}
    assert pass_sizing(0.0, 16_384, torch.device("cuda", 0)) == {}  # RERANK_GPU_FORWARD_MS=0: the fixed budget
    assert pass_sizing(8.0, 2048, torch.device("cpu")) == {}
