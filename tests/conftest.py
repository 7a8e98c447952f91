"""Session fixtures: small rerankers of every family built on disk (never from a hub)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _built(tmp_path_factory, kind: str, name: str, seed: int) -> str:
    from ops.models.builder import BUILDERS

    return str(BUILDERS[kind](tmp_path_factory.mktemp("models") / name, seed=seed))


@pytest.fixture(scope="session")
def bert_model_dir(tmp_path_factory) -> str:
    return _built(tmp_path_factory, "bert", "tiny-bert", seed=1)


@pytest.fixture(scope="session")
def xlmr_model_dir(tmp_path_factory) -> str:
    return _built(tmp_path_factory, "xlmr", "tiny-xlmr", seed=2)


@pytest.fixture(scope="session")
def qwen3_model_dir(tmp_path_factory) -> str:
    """A Qwen3-shaped causal-LM reranker with the Qwen3-Reranker recipe in its rerank_config.json."""
    return _built(tmp_path_factory, "qwen3-reranker", "tiny-qwen3-reranker", seed=3)


@pytest.fixture(scope="session")
def gemma_model_dir(tmp_path_factory) -> str:
    """A Gemma-shaped causal-LM reranker scored from "Yes" alone (the bge-reranker-v2-gemma recipe)."""
    return _built(tmp_path_factory, "gemma-reranker", "tiny-gemma-reranker", seed=4)


@pytest.fixture(scope="session")
def nv_model_dir(tmp_path_factory) -> str:
    """A Llama classifier with the NV RerankQA prompt (question:{query} \\n \\n passage:{passage})."""
    return _built(tmp_path_factory, "nv-reranker", "tiny-nv-reranker", seed=5)
