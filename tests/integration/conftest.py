"""Full-stack fixtures: a real redis-server, real worker processes and a real uvicorn, per test session."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.processes import Proc, start_api, start_redis, start_worker
from tests.reference import Reference


@dataclass
class Stack:
    model_id: str
    url: str
    redis_url: str
    worker: Proc
    api: Proc
    reference: Reference


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_server(log_dir):
    proc = start_redis(log_dir)
    yield proc
    proc.stop()


def _stack(log_dir, redis_url, model_dir, model_id, max_seq_len):
    settings = {"max_seq_len": max_seq_len} if max_seq_len else {}
    worker = start_worker(log_dir, redis_url=redis_url, model=model_dir, model_id=model_id, **settings)
    api = start_api(log_dir, redis_url=redis_url, model=model_dir, model_id=model_id)
    return Stack(model_id, api.extra["url"], redis_url, worker, api, Reference(model_dir, max_seq_len or 512))


@pytest.fixture(scope="session")
def bert_stack(log_dir, redis_server, bert_model_dir):
    stack = _stack(log_dir, redis_server.extra["url"], bert_model_dir, "acme/tiny-bert-reranker", None)
    yield stack
    stack.api.stop()
    stack.worker.stop()


@pytest.fixture(scope="session")
def xlmr_stack(log_dir, redis_server, xlmr_model_dir):
    """An XLM-R model served with a configured limit below the model's (RERANK_MAX_SEQ_LEN=128)."""
    stack = _stack(log_dir, redis_server.extra["url"], xlmr_model_dir, "tiny-xlmr", 128)
    yield stack
    stack.api.stop()
    stack.worker.stop()


@pytest.fixture(params=["bert", "xlmr"])
def stack(request) -> Stack:
    return request.getfixturevalue(f"{request.param}_stack")
