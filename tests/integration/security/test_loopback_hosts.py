"""An API bound to loopback answers only for loopback names unless RERANK_TRUSTED_HOSTS says otherwise: a web
page that rebinds its own DNS name to 127.0.0.1 gets a 400, not the fleet."""

from __future__ import annotations

import httpx

from shared.schemas import ErrorEnvelope
from tests.processes import start_api


def test_a_loopback_api_answers_only_for_loopback_names(log_dir, redis_server):
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model="unused", model_id="hosts/none")  # 127.0.0.1
    try:
        url, port = api.extra["url"] + "/v1/health/live", api.extra["url"].rsplit(":", 1)[1]
        refused = httpx.get(url, headers={"host": f"rebound.example.com:{port}"}, timeout=10)
        assert refused.status_code == 400, refused.text
        assert "RERANK_TRUSTED_HOSTS" in ErrorEnvelope.model_validate(refused.json()).error.message
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            assert httpx.get(url, headers={"host": host}, timeout=10).status_code == 200, host
    finally:
        api.stop()
