"""docker-compose.yml and the Dockerfiles: valid for docker-compose, wired as designed, health-checked, and
free of default secrets."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SECRETS = ("REDIS_PASSWORD", "RERANK_API_KEY", "FLOWER_BASIC_AUTH")
REQUIRED = ["REDIS_PASSWORD=s3cret-for-test", "FLOWER_BASIC_AUTH=admin:flower-for-test", "RERANK_API_KEY=key-for-test"]
DOCKER_COMPOSE = shutil.which("docker-compose")

needs_docker_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None,
    reason="docker-compose is not on PATH (CI installs it: apt-get install docker-compose); "
    "the compose file is validated here only by the PyYAML tests",
)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _compose_config(tmp_path: Path, env_lines: list[str]) -> subprocess.CompletedProcess:
    """`docker-compose config` with only `env_lines` as the .env file and no secret in the environment.

    An explicit --env-file keeps a developer's own .env out of the test.
    """
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{line}\n" for line in env_lines))
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith(("RERANK_", "COMPOSE_"))}
    return subprocess.run(
        [DOCKER_COMPOSE, "--env-file", str(env_file), "--project-directory", str(ROOT),
         "-f", str(COMPOSE_FILE), "config"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


# --- docker-compose validation -------------------------------------------------------------------


@needs_docker_compose
def test_config_is_valid_with_a_redis_password(tmp_path: Path) -> None:
    result = _compose_config(tmp_path, REQUIRED)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    redis_url = "redis://:s3cret-for-test@redis:6379/0"
    for name in ("api", "worker-gpu0", "worker-cpu", "flower"):
        assert resolved[name]["environment"]["RERANK_REDIS_URL"] == redis_url, name
    assert resolved["api"]["environment"]["RERANK_API_KEY"] == "key-for-test"
    assert "s3cret-for-test" not in str(resolved["redis"]["command"]), "the password stays off Redis's command line"
    assert "s3cret-for-test" not in str(resolved["redis"]["entrypoint"])
    assert resolved["redis"]["environment"]["REDIS_PASSWORD"] == "s3cret-for-test"
    assert resolved["flower"]["environment"]["RERANK_FLOWER_BASIC_AUTH"] == "admin:flower-for-test"
    for name, service in resolved.items():
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name


def _port(port: dict | str) -> tuple[str, int, int]:
    """(host address, published, target) from `docker-compose config`'s long or short port syntax."""
    if isinstance(port, dict):
        return str(port.get("host_ip", "")), int(port["published"]), int(port["target"])
    *host, published, target = port.split("/")[0].split(":")
    return (host[0] if host else ""), int(published), int(target)


@needs_docker_compose
def test_host_ports_are_variables_with_todays_defaults(tmp_path: Path) -> None:
    """A machine where another service holds 8000, 8001 or 5555 moves the stack's host side in .env."""
    def published(env_lines: list[str]) -> dict[str, set]:
        result = _compose_config(tmp_path, env_lines)
        assert result.returncode == 0, result.stderr
        services = yaml.safe_load(result.stdout)["services"]
        return {name: {_port(port) for port in services[name]["ports"]} for name in ("api", "flower")}

    assert published(REQUIRED) == {"api": {("", 8000, 8000), ("", 8001, 8001)}, "flower": {("127.0.0.1", 5555, 5555)}}
    moved = published([*REQUIRED, "HTTP_PORT=18000", "GRPC_PORT=18001", "FLOWER_PORT=15555"])
    assert moved == {"api": {("", 18000, 8000), ("", 18001, 8001)}, "flower": {("127.0.0.1", 15555, 5555)}}


@needs_docker_compose
def test_torch_indexes_and_the_extra_ca_bundle_are_build_arguments_with_todays_defaults(tmp_path: Path) -> None:
    result = _compose_config(tmp_path, REQUIRED)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["worker-gpu0"]["build"]["args"]["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cu128"
    assert services["worker-cpu"]["build"]["args"]["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    for name in ("api", "worker-gpu0", "worker-cpu"):
        assert services[name]["build"]["args"]["EXTRA_CA_BUNDLE"] == "ops/docker/no-extra-ca.pem", name
    mirrored = _compose_config(tmp_path, [*REQUIRED, "TORCH_CPU_INDEX_URL=http://mirror:8080/", "EXTRA_CA_BUNDLE=ops/docker/site-ca.pem"])
    services = yaml.safe_load(mirrored.stdout)["services"]
    assert services["worker-cpu"]["build"]["args"] == {"TORCH_INDEX_URL": "http://mirror:8080/", "EXTRA_CA_BUNDLE": "ops/docker/site-ca.pem"}


@needs_docker_compose
def test_config_fails_without_a_redis_password(tmp_path: Path) -> None:
    result = _compose_config(tmp_path, [REQUIRED[1], REQUIRED[2]])
    assert result.returncode != 0
    assert "set REDIS_PASSWORD in .env" in result.stderr


@needs_docker_compose
def test_config_fails_without_flower_credentials(tmp_path: Path) -> None:
    result = _compose_config(tmp_path, [REQUIRED[0], REQUIRED[2]])
    assert result.returncode != 0
    assert "set FLOWER_BASIC_AUTH in .env" in result.stderr


@needs_docker_compose
def test_config_fails_without_an_api_key(tmp_path: Path) -> None:
    """The API publishes 8000 and 8001: compose refuses to start it open."""
    result = _compose_config(tmp_path, REQUIRED[:2])
    assert result.returncode != 0
    assert "set RERANK_API_KEY in .env" in result.stderr


@needs_docker_compose
def test_env_example_as_it_is_leaves_the_password_to_set(tmp_path: Path) -> None:
    result = _compose_config(tmp_path, ENV_EXAMPLE.read_text().splitlines())
    assert result.returncode != 0
    assert "set REDIS_PASSWORD in .env" in result.stderr or "set FLOWER_BASIC_AUTH in .env" in result.stderr


# --- the file's structure --------------------------------------------------------------------------


def test_services_exist(compose: dict) -> None:
    assert {"redis", "api", "worker-gpu0", "worker-cpu", "flower"} <= set(compose["services"])
    assert "version" not in compose, "no top-level version: read as a Compose Specification file"


def test_api_publishes_8000_and_builds_its_image(compose: dict) -> None:
    api = compose["services"]["api"]
    assert {"${HTTP_PORT:-8000}:8000", "${GRPC_PORT:-8001}:8001"} <= {str(port) for port in api["ports"]}
    assert api["build"]["dockerfile"] == "ops/docker/Dockerfile.api"
    assert api["restart"] == "unless-stopped"
    for name in ("RERANK_REDIS_URL", "RERANK_MODEL", "RERANK_MODEL_ID", "RERANK_API_KEY"):
        assert name in api["environment"], name


def test_worker_gpu0_reserves_nvidia_gpu_0(compose: dict) -> None:
    worker = compose["services"]["worker-gpu0"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}]
    assert worker["build"]["dockerfile"] == "ops/docker/Dockerfile.worker"
    assert worker["environment"]["RERANK_DEVICE"] == "cuda"
    assert any(str(volume).endswith(":/models/hf-cache") for volume in worker["volumes"])
    assert worker["restart"] == "unless-stopped"


def test_worker_cpu_is_a_cpu_profile_with_cpu_torch(compose: dict) -> None:
    worker = compose["services"]["worker-cpu"]
    assert worker["profiles"] == ["cpu"]
    assert worker["build"]["args"]["TORCH_INDEX_URL"] == "${TORCH_CPU_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
    assert worker["build"]["dockerfile"] == compose["services"]["worker-gpu0"]["build"]["dockerfile"], "one worker Dockerfile"
    assert worker["environment"]["RERANK_DEVICE"] == "cpu"
    assert "deploy" not in worker


def test_workers_share_the_api_redis_and_model(compose: dict) -> None:
    api_env = compose["services"]["api"]["environment"]
    assert api_env["RERANK_REDIS_URL"] == "redis://:${REDIS_PASSWORD}@redis:6379/0"
    for name in ("worker-gpu0", "worker-cpu"):
        env = compose["services"][name]["environment"]
        for key in ("RERANK_REDIS_URL", "RERANK_MODEL", "RERANK_MODEL_ID"):
            assert env[key] == api_env[key], (name, key)
        assert "RERANK_API_KEY" not in env, "workers have no use for the API key"
    assert "RERANK_API_KEY" not in compose["services"]["flower"]["environment"]


def test_every_service_is_locked_down(compose: dict) -> None:
    for name, service in compose["services"].items():
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("mem_limit") and service.get("pids_limit"), name


def test_every_worker_can_serve_a_local_model_directory(compose: dict) -> None:
    for name in ("worker-gpu0", "worker-cpu"):
        assert "./models:/models/local:ro" in compose["services"][name]["volumes"], name


def test_redis_is_persistent_password_protected_and_health_checked(compose: dict) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"] == "redis:7-alpine"
    # The image's entrypoint drops to its redis user only for a redis-server command; without capabilities
    # root can do neither that nor write /data, so the container runs as redis and the command is redis-server.
    assert redis["user"] == "redis"
    assert redis["command"][0] == "redis-server"
    assert 'exec docker-entrypoint.sh "$$@"' in redis["entrypoint"][2], "the image's own entrypoint runs the command"
    command = " ".join(redis["entrypoint"] + redis["command"])
    assert "appendonly yes" in command
    assert "--requirepass" not in command, "the password reaches redis-server through a file, not its argv"
    assert "requirepass" in command and "$$REDIS_PASSWORD" in command
    assert redis["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    assert "maxmemory-policy noeviction" in command and "maxmemory ${REDIS_MAXMEMORY:-" in command
    test = " ".join(redis["healthcheck"]["test"])
    assert "redis-cli" in test and "ping" in test
    # The healthcheck authenticates: with -a, or through REDISCLI_AUTH set from the password.
    assert "REDIS_PASSWORD" in test or "${REDIS_PASSWORD" in str(redis.get("environment", {}).get("REDISCLI_AUTH"))
    assert any(str(volume).endswith(":/data") for volume in redis["volumes"])
    data_volume = next(str(v) for v in redis["volumes"] if str(v).endswith(":/data")).split(":")[0]
    assert data_volume in compose["volumes"], "Redis data lives in a named volume"
    assert "ports" not in redis, "Redis is reachable only on the compose network"


def test_every_dependency_on_redis_waits_until_it_is_healthy(compose: dict) -> None:
    dependants = 0
    for name, service in compose["services"].items():
        depends_on = service.get("depends_on", {})
        if isinstance(depends_on, list):
            assert "redis" not in depends_on, f"{name}: list form cannot wait for health"
            continue
        if "redis" in depends_on:
            assert depends_on["redis"] == {"condition": "service_healthy"}, name
            dependants += 1
    assert dependants >= 4  # api, worker-gpu0, worker-cpu, flower


def test_every_service_is_health_checked_and_restarted(compose: dict) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name} has a healthcheck"
        assert service.get("restart") == "unless-stopped", name
    assert "/v1/health/live" in " ".join(compose["services"]["api"]["healthcheck"]["test"])
    for name in ("worker-gpu0", "worker-cpu"):
        check = compose["services"][name]["healthcheck"]
        assert check["test"] == ["CMD", "python", "-m", "worker.healthcheck"], name
        assert check["start_period"] == "10m", f"{name}: room for a first model download"


def test_flower_serves_5555_with_auth_and_persistent_state(compose: dict) -> None:
    flower = compose["services"]["flower"]
    assert flower["ports"] == ["127.0.0.1:${FLOWER_PORT:-5555}:5555"], "Flower is published on loopback only"
    assert flower["command"] == ["python", "-m", "api.cli.flower"]
    api = compose["services"]["api"]
    assert flower["image"] == api["image"] and api["build"]["dockerfile"] == "ops/docker/Dockerfile.api"
    assert "build" not in flower, "the API's image, built once (by the api service)"
    assert flower["depends_on"]["api"] == {"condition": "service_started"}, "compose builds api's image first"
    env = flower["environment"]
    assert env["RERANK_FLOWER_PORT"] == "5555"
    assert env["RERANK_FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    state_dir = env["RERANK_FLOWER_DB"].rsplit("/", 1)[0]
    volume = next(str(v) for v in flower["volumes"] if str(v).endswith(f":{state_dir}"))
    assert volume.split(":")[0] in compose["volumes"], "Flower's state lives in a named volume"
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])
    assert flower["depends_on"]["redis"] == {"condition": "service_healthy"}


def test_dockerfiles_have_healthchecks_and_run_as_non_root() -> None:
    for name, probe in (("Dockerfile.api", "/v1/health/live"), ("Dockerfile.worker", "worker.healthcheck")):
        text = (ROOT / "ops" / "docker" / name).read_text()
        healthcheck = text[text.index("HEALTHCHECK") :].split("\n\n", 1)[0]
        assert probe in healthcheck, name
        assert "USER 10001" in text, name
        assert text.count("FROM ") == 2, f"{name}: multi-stage, build tools stay in the first stage"
    assert "chown rerank:rerank /var/lib/flower" in (ROOT / "ops" / "docker" / "Dockerfile.api").read_text()


def test_the_api_image_installs_no_torch_and_no_image_declares_a_volume() -> None:
    api = (ROOT / "ops" / "docker" / "Dockerfile.api").read_text()
    installs = [line for line in api.splitlines() if "pip install" in line]
    assert installs and not any("torch" in line for line in installs), installs
    assert "requirements.py --without-model-stack" in api
    requirements = subprocess.run([sys.executable, str(ROOT / "ops" / "docker" / "requirements.py"), "--without-model-stack"],
                                  cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    names = {re.split(r"[\[<>=!~;]", line, maxsplit=1)[0].lower() for line in requirements}
    assert not names & {"torch", "transformers", "tokenizers", "safetensors", "huggingface-hub"}
    assert {"fastapi", "celery[redis]".split("[")[0], "tritonclient", "flower"} <= names
    for name in ("Dockerfile.api", "Dockerfile.worker"):
        assert "\nVOLUME" not in (ROOT / "ops" / "docker" / name).read_text(), f"{name}: compose mounts what it needs"
    worker = (ROOT / "ops" / "docker" / "Dockerfile.worker").read_text()
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128" in worker


def test_the_build_context_holds_the_packages_only() -> None:
    """.dockerignore: everything out, then the four packages and the two files the Dockerfiles copy back in."""
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert patterns[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!api/", "!worker/", "!shared/", "!ops/"} <= set(patterns)


def test_no_default_secret_in_the_file() -> None:
    text = COMPOSE_FILE.read_text()
    for secret in SECRETS:
        # ${VAR:-x}, ${VAR-x}, ${VAR:=x} and ${VAR=x} would all hand out a known secret.
        assert not re.search(r"\$\{" + secret + r":?[-=]", text), secret
        assert f"${{{secret}" in text, f"{secret} comes from the environment"
    compose = yaml.safe_load(text)
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        if "RERANK_API_KEY" in env:
            assert env["RERANK_API_KEY"] == "${RERANK_API_KEY:?set RERANK_API_KEY in .env}", name
        if "RERANK_FLOWER_BASIC_AUTH" in env:
            assert env["RERANK_FLOWER_BASIC_AUTH"] == "${FLOWER_BASIC_AUTH:?set FLOWER_BASIC_AUTH in .env}", name
        assert all("REDIS_PASSWORD" not in key or "${REDIS_PASSWORD" in str(value) for key, value in env.items())
    assert "${REDIS_PASSWORD:?" in text, "a missing REDIS_PASSWORD stops compose"


def test_env_example_documents_each_variable_and_holds_no_secret() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    assignments = {line.split("=", 1)[0]: (i, line.split("=", 1)[1]) for i, line in enumerate(lines) if "=" in line
                   and not line.startswith("#")}  # fmt: skip
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    assert {"REDIS_PASSWORD", "RERANK_MODEL", "RERANK_MODEL_ID", "RERANK_API_KEY", "FLOWER_BASIC_AUTH"} <= used
    for name in used:
        assert name in assignments, name
        index, _ = assignments[name]
        assert index > 0 and lines[index - 1].startswith("#"), f"{name} has a comment"
    for secret in SECRETS:
        assert assignments[secret][1] == "", f"{secret} is left for the user to set"
