"""The CPU engine's default thread count (worker/engine/threads.py) on real models and as a rule: a function of
the model's shapes, never of how busy the machine is."""

import time

import torch
import transformers

from ops.models.builder import build_bert
from shared.settings import Settings
from worker.engine.threads import CHEAP_BELOW_FLOPS, fit_cpu_threads, forward_flops_per_token, threads_for
from worker.model.runtime import CrossEncoder


def test_a_cheap_forward_pass_leaves_a_core_to_the_request_path():
    cheap, costly = CHEAP_BELOW_FLOPS // 50, 20 * CHEAP_BELOW_FLOPS
    assert threads_for(cheap, 2) == 1
    assert threads_for(cheap, 16) == 15
    assert threads_for(costly, 2) == 2
    assert threads_for(cheap, 1) == 1  # nothing to spare


def _bert(**shape) -> torch.nn.Module:
    config = transformers.BertConfig(vocab_size=30522, num_labels=1, **shape)
    return transformers.BertForSequenceClassification(config)


def test_the_cost_is_read_off_the_shapes_near_free_below_and_minilm_far_above():
    near_free = forward_flops_per_token(_bert(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                              intermediate_size=64))  # fmt: skip
    minilm = forward_flops_per_token(_bert(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                           intermediate_size=1536))  # fmt: skip
    assert near_free == 2 * (4 * 32 * 32 + 2 * 32 * 64 + 32 * 32 + 32)  # one layer, the pooler and the logit
    assert near_free < CHEAP_BELOW_FLOPS / 10 and minilm > 10 * CHEAP_BELOW_FLOPS
    assert threads_for(near_free, 2) == 1 and threads_for(minilm, 2) == 2


def test_the_engine_fits_its_threads_to_a_near_free_model_however_busy_the_machine(tmp_path):
    model_dir = build_bert(tmp_path / "bert", layers=1)
    encoder = CrossEncoder.load(Settings(model=str(model_dir), device="cpu"))
    slow_score = encoder.score

    def busy_machine_score(pairs):  # every pass as slow as on a machine loaded many times over
        time.sleep(0.05)
        return slow_score(pairs)

    encoder.score = busy_machine_score
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        encoder.warmup()
        fit_cpu_threads(encoder)
        assert torch.get_num_threads() == 1  # the tiny BERT costs far less than the path per token
        assert encoder.score(encoder.encode("q", ["a passage"], "END")).shape == (1,)
    finally:
        torch.set_num_threads(before)
