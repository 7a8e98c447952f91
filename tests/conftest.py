"""Session fixtures: small cross-encoders built on disk (never from a hub) and a transformers reference."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def bert_model_dir(tmp_path_factory) -> str:
    from ops.models.builder import build_bert

    return str(build_bert(tmp_path_factory.mktemp("models") / "tiny-bert", seed=1))


@pytest.fixture(scope="session")
def xlmr_model_dir(tmp_path_factory) -> str:
    from ops.models.builder import build_xlmr

    return str(build_xlmr(tmp_path_factory.mktemp("models") / "tiny-xlmr", seed=2))
