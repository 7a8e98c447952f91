"""One fleet of the three prompt-recipe families: a worker per model, one API serving them all (RERANK_MODELS)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.processes import start_api, start_worker
from tests.reference import PromptReference

QWEN3, GEMMA, NV = "tiny-qwen3-reranker", "acme/tiny-gemma-reranker", "tiny-nv-reranker.v2"


@dataclass
class RecipeFleet:
    url: str
    grpc: str
    references: dict[str, PromptReference]  # model id -> the contract's reference


@pytest.fixture(scope="session")
def recipe_fleet(log_dir, redis_server, qwen3_model_dir, gemma_model_dir, nv_model_dir):
    redis_url = redis_server.extra["url"]
    models = {QWEN3: qwen3_model_dir, GEMMA: gemma_model_dir, NV: nv_model_dir}
    with ThreadPoolExecutor(len(models)) as pool:
        workers = list(pool.map(lambda item: start_worker(log_dir, redis_url=redis_url, model=item[1], model_id=item[0]),
                                models.items()))  # fmt: skip
    api = start_api(log_dir, redis_url=redis_url, models=",".join(f"{i}={d}" for i, d in models.items()))
    yield RecipeFleet(api.extra["url"], api.extra["grpc"], {i: PromptReference(d, 512) for i, d in models.items()})
    api.stop()
    for worker in workers:
        worker.stop()


@pytest.fixture(params=[QWEN3, GEMMA, NV], ids=["qwen3", "gemma", "nv"])
def family(request, recipe_fleet) -> tuple[str, PromptReference]:
    """(model id, reference) of each family in turn."""
    return request.param, recipe_fleet.references[request.param]
