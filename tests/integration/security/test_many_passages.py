"""A body of many tiny passages is refused on the list's length (413, RERANK_MAX_PASSAGES) without stalling the
event loop that every request shares: a health probe stays fast while a client sends 690,000 of them."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.hostile_clients import health_probes, silent_api

MODEL_ID = "many/passages"


@pytest.fixture(scope="module")
def api(log_dir, redis_server):
    with silent_api(log_dir, redis_server, MODEL_ID) as proc:
        yield proc


@pytest.mark.parametrize(("route", "field", "item"), [
    ("/v1/ranking", "passages", {"text": ""}),
    ("/v1/rerank", "documents", {"text": ""}),
], ids=["ranking", "cohere"])  # fmt: skip
def test_690000_tiny_passages_are_413_without_stalling_health(api, route, field, item):
    query = {"text": "q"} if field == "passages" else "q"
    body = json.dumps({"model": MODEL_ID, "query": query, field: [item] * 690_000}, separators=(",", ":")).encode()
    assert len(body) < 8 * 1024 * 1024  # under RERANK_MAX_BODY_BYTES: only the passage limit refuses it
    url = api.extra["url"]
    with health_probes(url) as latencies, httpx.Client(timeout=60) as client:
        for _ in range(3):
            response = client.post(url + route, content=body, headers={"content-type": "application/json"})
            assert response.status_code == 413, response.text[:300]
            assert response.json()["error"]["message"] == "690000 passages sent; at most 512 are accepted per request"
    print(f"\nhealth during three 690,000-passage bodies ({len(body) / 1e6:.1f} MB): max "
          f"{max(latencies) * 1000:.0f} ms over {len(latencies)} probes")
    assert max(latencies) < 0.5, f"slowest health probe {max(latencies):.2f} s"
