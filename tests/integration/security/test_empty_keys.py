"""A key setting that yields no key (`RERANK_API_KEY=","`, a key file of separators) stops the API at start,
instead of serving every route open without a warning; a short key starts, with a warning."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.processes import child_env, start_api
from api.cli.embedded_redis import free_port

START_SECONDS = 30


def _start(**settings) -> tuple[int | None, str]:
    """(exit code, output) of `python -m api`; None (and the API stopped) if it was still serving after 30 s."""
    env = child_env(redis_url="redis://127.0.0.1:1/0", model="unused", model_id="m", port=free_port(), grpc_port=0,
                    **settings)  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "api"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)  # fmt: skip
    try:
        out, _ = process.communicate(timeout=START_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        return None, out
    return process.returncode, out


@pytest.mark.parametrize("key", [",", " , ,", "   "], ids=["comma", "commas-and-spaces", "spaces"])
def test_an_api_key_of_separators_stops_the_api(key):
    code, out = _start(api_key=key)
    assert code not in (None, 0), f"the API started with RERANK_API_KEY={key!r}:\n{out[-2000:]}"
    assert "RERANK_API_KEY holds no key" in out


def test_a_key_file_of_separators_stops_the_api(tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text(",,\n")
    code, out = _start(api_key_file=key_file)
    assert code not in (None, 0), f"the API started with a key file of commas:\n{out[-2000:]}"
    assert "RERANK_API_KEY_FILE holds no key" in out


def test_a_short_key_starts_with_a_warning(log_dir, redis_server):
    api = start_api(log_dir, redis_url=redis_server.extra["url"], model="unused", model_id="m", api_key="short-key")
    try:
        assert httpx.get(api.extra["url"] + "/v1/models").status_code == 401
        assert "shorter than 16 characters" in api.log()
    finally:
        api.stop()
