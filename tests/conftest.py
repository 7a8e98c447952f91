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


@pytest.fixture(scope="session")
def qwen3_model_dir(tmp_path_factory) -> str:
    """A Qwen3-shaped causal-LM reranker with the Qwen3-Reranker recipe in its rerank_config.json."""
    from ops.models.prompted import build_qwen3_reranker

    return str(build_qwen3_reranker(tmp_path_factory.mktemp("models") / "tiny-qwen3-reranker", seed=3))


@pytest.fixture(scope="session")
def gemma_model_dir(tmp_path_factory) -> str:
    """A Gemma-shaped causal-LM reranker scored from "Yes" alone (the bge-reranker-v2-gemma recipe)."""
    from ops.models.prompted import build_gemma_reranker

    return str(build_gemma_reranker(tmp_path_factory.mktemp("models") / "tiny-gemma-reranker", seed=4))


@pytest.fixture(scope="session")
def nv_model_dir(tmp_path_factory) -> str:
    """A Llama classifier with the NV RerankQA prompt (question:{query} \\n \\n passage:{passage})."""
    from ops.models.prompted import build_nv_reranker

    return str(build_nv_reranker(tmp_path_factory.mktemp("models") / "tiny-nv-reranker", seed=5))
