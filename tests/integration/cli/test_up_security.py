"""`rerank-fleet up` locks what it starts: its embedded Redis asks for a password generated for the run
(never on a command line or printed), refuses CONFIG, MODULE, MONITOR and DEBUG; Flower asks for
credentials that `up` generates and prints once, on every page (`/metrics` too); the API key reaches
the API only."""

from __future__ import annotations

import re
import stat
from pathlib import Path

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


def test_flower_asks_for_the_credentials_up_wrote_to_a_private_file(fleet):
    _, output, children, flower = fleet
    login_file = Path(re.search(r"Flower login\s+in (\S+)", output).group(1))
    assert stat.S_IMODE(login_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(login_file.parent.stat().st_mode) == 0o700
    user, password = login_file.read_text().strip().split(":", 1)
    assert len(password) >= 16 and password not in output
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


def test_the_embedded_redis_has_a_memory_limit_that_metrics_report(fleet):
    """`maxmemory` (RERANK_EMBEDDED_REDIS_MAXMEMORY_MB, 2048 by default) with `noeviction`, as compose's Redis has,
    and the output buffers of normal clients capped (CVE-2025-21605), in the configuration up wrote."""
    _, output, children, _ = fleet
    base = re.search(r"HTTP\s+(http://\S+)/v1/ranking", output).group(1)
    metrics = httpx.get(base + "/metrics", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30).text
    limit = [line for line in metrics.splitlines() if line.startswith("rerank_redis_maxmemory_bytes ")]
    assert limit and float(limit[0].split()[1]) == 2048 * 1024 * 1024, limit
    assert redis.Redis.from_url(_redis_url(children)).info("memory")["maxmemory_policy"] == "noeviction"
    [pid] = [pid for pid, (command, _) in children.items() if "redis-server" in command.split()[0]]
    config = Path(f"/proc/{pid}/cwd/redis.conf").read_text()  # redis-server works in its data directory
    assert "client-output-buffer-limit normal 64mb 16mb 60" in config
