"""`rerank-fleet up` locks what it starts: its embedded Redis asks for a password generated for the run
(never on a command line or printed), refuses CONFIG, MODULE, MONITOR and DEBUG; Flower asks for
credentials that `up` generates and prints once, on every page (`/metrics` too); the API key reaches
the API only."""

from __future__ import annotations

import re

import httpx
import pytest
import redis

from api.cli.embedded_redis import free_port
from tests.integration.cli.test_rerank_fleet_up import _children, _command, _environ, _poll, _start_up, _stop_up
from tests.processes import child_env

API_KEY = "up-security-test-key"


@pytest.fixture(scope="module")
def fleet(bert_model_dir, tmp_path_factory):
    port, flower_port = free_port(), free_port()
    env = child_env(api_key=API_KEY)
    log_dir = tmp_path_factory.mktemp("up-security")
    up, output = _start_up(log_dir, "--model", bert_model_dir, "--model-id",
                           "up-security", "--port", str(port), "--grpc-port", str(free_port()), "--flower-port",
                           str(flower_port), env=env)  # fmt: skip
    children = {pid: (_command(pid), _environ(pid)) for pid in _children(up.pid)}
    yield up, output, children, f"http://127.0.0.1:{flower_port}"
    if up.poll() is None:
        _stop_up(up, log_dir / "up.log")


def _redis_url(children) -> str:
    urls = {environ.get("RERANK_REDIS_URL") for _, environ in children.values()} - {None}
    assert len(urls) == 1, urls
    return urls.pop()


def test_the_embedded_redis_needs_its_password_and_refuses_admin_commands(fleet):
    _, output, children, _ = fleet
    url = _redis_url(children)
    password = redis.connection.parse_url(url).get("password")
    assert password and len(password) >= 16
    port = int(re.search(r"Redis\s+redis://\*\*\*@127\.0\.0\.1:(\d+)/0", output).group(1))
    anonymous = redis.Redis(port=port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.publish("celery-task-meta-forged", '{"status": "SUCCESS", "result": {"ok": {}}}')  # a forged result
    with pytest.raises(redis.AuthenticationError):
        anonymous.keys("*")
    authorised = redis.Redis.from_url(url)
    assert authorised.ping()
    for command in (("CONFIG", "GET", "*"), ("MONITOR",), ("DEBUG", "SLEEP", "0"), ("MODULE", "LIST")):
        with pytest.raises(redis.ResponseError, match="unknown command"):
            authorised.execute_command(*command)
    for command, _ in children.values():
        assert password not in command
    assert password not in output


def test_flower_asks_for_the_credentials_up_printed(fleet):
    _, output, children, flower = fleet
    user, password = re.search(r"Flower login\s+user (\S+), password (\S+)", output).groups()
    assert len(password) >= 16
    for path in ("/api/workers", "/metrics", "/"):
        assert httpx.get(flower + path, timeout=10).status_code == 401, path
        assert httpx.get(flower + path, auth=(user, "wrong"), timeout=10).status_code == 401, path
    assert httpx.get(flower + "/metrics", auth=(user, password), timeout=10).status_code == 200
    workers = _poll(lambda: httpx.get(f"{flower}/api/workers?refresh=1", auth=(user, password), timeout=30).json())
    assert workers
    redis_password = redis.connection.parse_url(_redis_url(children))["password"]
    for name in workers:
        page = httpx.get(f"{flower}/worker/{name}", auth=(user, password), timeout=30).text
        assert redis_password not in page and redis_password not in str(workers)
    for command, environ in children.values():
        assert password not in command


def test_the_api_key_reaches_only_the_api(fleet):
    _, _, children, _ = fleet
    holders = [command for command, environ in children.values() if "RERANK_API_KEY" in environ]
    assert len(holders) == 1 and "-m api" in holders[0], holders
