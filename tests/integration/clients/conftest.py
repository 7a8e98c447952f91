"""Fixtures for the real client libraries (LiteLLM, LangChain NVIDIARerank, cohere) against real servers.

The clients must never leave the machine: LiteLLM would download its price list and the NVIDIA connector
can send usage telemetry, so both are switched off through their documented variables before any client
is imported, and an audit hook refuses (and records) every connection and name lookup that is not local.
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.integration.clients.support import API_KEY, DOTTED_MODEL_ID, KeyedStack
from tests.processes import start_api, start_redis, start_worker

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no download of model_prices_and_context_window.json
os.environ["NVIDIA_USAGE_TELEMETRY_ENABLED"] = "false"  # langchain-nvidia-ai-endpoints' usage telemetry
for _name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "CO_API_URL"):
    os.environ.pop(_name, None)

_LOCAL_HOSTS = {None, "", "localhost", "127.0.0.1", "::1"}
BLOCKED: list[str] = []  # every non-local connection or lookup a client tried during this test session


def _no_internet(event: str, args: tuple) -> None:
    if event == "socket.getaddrinfo":
        host = args[0].decode() if isinstance(args[0], bytes) else args[0]
    elif event == "socket.connect" and isinstance(args[1], tuple):
        host = args[1][0]
    else:
        return
    if host not in _LOCAL_HOSTS:
        BLOCKED.append(f"{event} {host}")
        raise OSError(f"the client tests must not reach the internet ({host})")


sys.addaudithook(_no_internet)  # audit hooks cannot be removed; it only refuses non-local hosts


@pytest.fixture(autouse=True)
def nothing_leaves_the_machine(monkeypatch):
    """Clients see no keys from the environment, and no test may have tried to reach the internet."""
    for name in ("NVIDIA_API_KEY", "NGC_API_KEY", "NVIDIA_NIM_API_KEY", "CO_API_KEY", "COHERE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield
    assert not BLOCKED, f"a client tried to reach the internet: {BLOCKED}"


@pytest.fixture(scope="package")
def keyed_stack(log_dir, bert_model_dir) -> KeyedStack:
    """The tiny BERT under a dotted id and RERANK_API_KEY, on its own Redis (so /v1/models lists one model)."""
    redis_proc = start_redis(log_dir)
    url = redis_proc.extra["url"]
    worker = start_worker(log_dir, redis_url=url, model=bert_model_dir, model_id=DOTTED_MODEL_ID)
    api = start_api(log_dir, redis_url=url, model=bert_model_dir, model_id=DOTTED_MODEL_ID, api_key=API_KEY)
    yield KeyedStack(DOTTED_MODEL_ID, api.extra["url"], API_KEY)
    api.stop()
    worker.stop()
    redis_proc.stop()
