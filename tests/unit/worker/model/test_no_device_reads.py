"""A forward pass never reads the device on the host (worker/model/masks.py), for every family the project serves.

On CUDA a device-to-host read inside a pass (`.item()`, `bool(tensor)`, `nonzero`, a boolean index...) waits
for every queued pass, so the engine cannot queue the next pass while one runs. The check runs the engine's
`launch` on a CPU under a TorchDispatchMode that records every op that would force such a read on a device,
in the layout and with the masks CUDA takes (transformers' forward, `host_masks`), over batches of mixed
lengths and of one length. A transformers upgrade that brings a read back fails here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from torch.utils._python_dispatch import TorchDispatchMode

from shared.settings import Settings
from worker.model.runtime import CrossEncoder

# ops whose result the host must wait for: a scalar read, a truth value, output shapes that depend on values
_READS = {
    "_local_scalar_dense", "item", "is_nonzero", "nonzero", "equal", "allclose", "masked_select", "unique",
    "_unique", "_unique2", "unique_consecutive", "unique_dim", "bincount", "histc", "_assert_async",
}  # fmt: skip
_READS_WITHOUT_SIZE = {"repeat_interleave"}  # a value-dependent output size unless `output_size` is given


def _reads(func, args, kwargs) -> bool:
    name = func.overloadpacket.__name__
    if name in _READS:
        return True
    if name in _READS_WITHOUT_SIZE:
        return kwargs.get("output_size") is None and any(torch.is_tensor(a) for a in args[1:2])
    if name in ("index", "index_put", "index_put_"):  # a boolean index is a nonzero
        indices = args[1] if len(args) > 1 else ()
        return any(torch.is_tensor(i) and i.dtype == torch.bool for i in indices or ())
    return False


class DeviceReads(TorchDispatchMode):
    """Records the ops run under it that would make the host wait for a device."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _reads(func, args, kwargs):
            self.seen.append(str(func))
        return func(*args, **kwargs)


def _modernbert_dir(tmp_path, bert_model_dir: str) -> str:
    """A tiny ModernBERT classifier (global and sliding-window layers) with the tiny BERT's WordPiece tokenizer."""
    torch.manual_seed(0)
    config = transformers.ModernBertConfig(
        vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
        global_attn_every_n_layers=2, local_attention=8, max_position_embeddings=512, num_labels=1,
        pad_token_id=0, cls_token_id=101, sep_token_id=102, initializer_range=0.2,
    )  # fmt: skip
    out = tmp_path / "tiny-modernbert"
    transformers.ModernBertForSequenceClassification(config).eval().save_pretrained(out)
    for source in Path(bert_model_dir).iterdir():
        if source.name.startswith(("tokenizer", "special_tokens", "vocab")):
            shutil.copy(source, out / source.name)
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    tokenizer_config["model_input_names"] = ["input_ids", "attention_mask"]  # ModernBERT takes no segment ids
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return str(out)


def _llama_dir(tmp_path) -> str:
    from ops.models.builder import LLAMA_TINY, build_llama

    return str(build_llama(tmp_path / "llama-tiny", shape=LLAMA_TINY, dtype=torch.float32))


FAMILIES = {
    "bert": lambda request, tmp_path: request.getfixturevalue("bert_model_dir"),
    "xlm-r": lambda request, tmp_path: request.getfixturevalue("xlmr_model_dir"),
    "modernbert": lambda request, tmp_path: _modernbert_dir(tmp_path, request.getfixturevalue("bert_model_dir")),
    "llama classifier": lambda request, tmp_path: _llama_dir(tmp_path),
    "nv classifier (prompted llama)": lambda request, tmp_path: request.getfixturevalue("nv_model_dir"),
    "qwen3 token logits": lambda request, tmp_path: request.getfixturevalue("qwen3_model_dir"),
    "gemma token logits": lambda request, tmp_path: request.getfixturevalue("gemma_model_dir"),
}
PASSAGES = ["a short passage", "a passage of a good many more words than the first one has in it", "x"]


@pytest.fixture(params=sorted(FAMILIES))
def encoder(request, tmp_path) -> CrossEncoder:
    model_dir = FAMILIES[request.param](request, tmp_path)
    loaded = CrossEncoder.load(Settings(model=model_dir, device="cpu", packed_forward="off"))  # CUDA's layout
    assert loaded.layout == "transformers" and not loaded.host_masks  # on a CPU, transformers' own mask path
    loaded.host_masks = True  # and CUDA's masks
    return loaded


@pytest.mark.parametrize("passages", [PASSAGES, ["the same words"] * 3], ids=["mixed lengths", "one length"])
def test_a_pass_never_reads_the_device(encoder, passages):
    pairs = encoder.encode("which passage", passages, "END")
    with DeviceReads() as reads:
        encoder.launch(pairs)
    assert reads.seen == []


def test_host_masks_give_the_logits_of_transformers_own_mask_path(encoder):
    """Parity: each pair scored in a mixed batch under the host's masks scores as it does alone (no padding)."""
    pairs = encoder.encode("which passage", PASSAGES + ["the same words " * 5], "END")
    together = encoder.score(pairs)
    alone = [float(encoder.score(encoder.encode("which passage", [p], "END"))[0]) for p in PASSAGES]
    assert together[: len(PASSAGES)].tolist() == pytest.approx(alone, abs=1e-4)


def test_the_check_sees_transformers_own_mask_path_read_the_device(bert_model_dir):
    """The check can fail: transformers given the 2-D padding mask asks the device whether it may skip it."""
    model = transformers.AutoModelForSequenceClassification.from_pretrained(bert_model_dir).eval()
    ids = torch.tensor([[101, 2054, 102], [101, 102, 0]])
    with DeviceReads() as reads, torch.inference_mode():
        model(input_ids=ids, attention_mask=(ids != 0).long())
    assert reads.seen, "transformers' 2-D mask path read nothing: the check above would pass vacuously"
