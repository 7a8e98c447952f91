"""The CPU engine's default thread count (worker/engine/threads.py) on a real tiny model and as a rule."""

import torch

from ops.models.builder import build_bert
from shared.settings import Settings
from worker.engine.threads import PATH_CPU_US_PER_TOKEN, RESERVE_BELOW, fit_cpu_threads, threads_for
from worker.model.runtime import CrossEncoder


def test_a_cheap_forward_pass_leaves_a_core_to_the_request_path():
    cheap, costly = PATH_CPU_US_PER_TOKEN, 2 * RESERVE_BELOW * PATH_CPU_US_PER_TOKEN
    assert threads_for(cheap, 2) == 1
    assert threads_for(cheap, 16) == 15
    assert threads_for(costly, 2) == 2
    assert threads_for(cheap, 1) == 1  # nothing to spare


def test_the_engine_fits_its_threads_to_a_near_free_model(tmp_path):
    model_dir = build_bert(tmp_path / "bert", layers=1)
    encoder = CrossEncoder.load(Settings(model=str(model_dir), device="cpu"))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        encoder.warmup()
        fit_cpu_threads(encoder)
        assert torch.get_num_threads() == 1  # the tiny BERT costs far less than the path per token
        assert encoder.score(encoder.encode("q", ["a passage"], "END")).shape == (1,)
    finally:
        torch.set_num_threads(before)
