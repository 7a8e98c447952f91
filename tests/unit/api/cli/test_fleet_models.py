"""Several models in one `rerank-fleet up`: how --model options become settings, and the workers each model gets."""

from __future__ import annotations

import pytest

from api.cli.fleet_models import model_overrides, ready_lines, worker_envs
from api.cli.launcher import cpu_worker_envs, settings_env
from shared.settings import Settings


def test_a_bare_model_keeps_today_s_meaning_and_id_equals_source_names_its_id(tmp_path):
    assert model_overrides(None, None) == {}
    bare = model_overrides(["acme/reranker"], None)
    assert bare == {"model": "acme/reranker", "model_id": "acme/reranker", "models": None}
    assert model_overrides(["acme/reranker"], "mine")["model_id"] == "mine"
    assert model_overrides(["mine=acme/reranker"], None)["model_id"] == "mine"
    (tmp_path / "local-model").mkdir()
    local = model_overrides([str(tmp_path / "local-model")], None)
    assert local["model"] == str(tmp_path / "local-model") and local["model_id"] == "local-model"


def test_several_models_become_rerank_models_with_absolute_directories(tmp_path, monkeypatch):
    (tmp_path / "second").mkdir()
    monkeypatch.chdir(tmp_path)
    overrides = model_overrides(["first=acme/one", "second"], None)
    assert overrides == {"models": f"first=acme/one,second={tmp_path / 'second'}"}
    assert Settings(**overrides).model_sources == [("first", "acme/one"), ("second", str(tmp_path / "second"))]
    with pytest.raises(ValueError, match="--model-id names the id of a single --model"):
        model_overrides(["acme/one", "acme/two"], "mine")
    with pytest.raises(ValueError, match="names its id already"):
        model_overrides(["first=acme/one"], "mine")


def test_each_model_gets_its_workers_and_the_cpu_cores_are_shared_among_all(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    settings = Settings(models="a=acme/one,b=acme/two", cpu_workers=2)
    workers = worker_envs(settings, settings_env(settings), [], cpu_worker_envs)
    assert [name for name, _ in workers] == ["worker-a-0", "worker-a-1", "worker-b-0", "worker-b-1"]
    assert [(env["RERANK_MODEL_ID"], env["RERANK_MODEL"]) for _, env in workers] == [
        ("a", "acme/one"), ("a", "acme/one"), ("b", "acme/two"), ("b", "acme/two")
    ]  # fmt: skip
    assert {env["RERANK_TORCH_THREADS"] for _, env in workers} == {"2"}  # 8 cores over 4 workers
    on_gpus = worker_envs(settings, {}, ["0", "1"], cpu_worker_envs)
    assert [(env["RERANK_MODEL_ID"], env["CUDA_VISIBLE_DEVICES"]) for _, env in on_gpus] == [
        ("a", "0"), ("a", "1"), ("b", "0"), ("b", "1")
    ]  # fmt: skip
    single = Settings(model="acme/one", model_id="one")
    (only,) = worker_envs(single, {}, [], cpu_worker_envs)
    assert (only[0], only[1]["RERANK_MODEL_ID"]) == ("worker-0", "one")


def test_one_recipe_file_for_several_models_is_refused():
    settings = Settings(models="a=acme/one,b=acme/two", recipe_file="/etc/recipe.json")
    with pytest.raises(RuntimeError, match="rerank_config.json in each model's directory"):
        worker_envs(settings, {}, [], cpu_worker_envs)
    assert settings_env(Settings(recipe_file="/etc/recipe.json"))["RERANK_MODEL_CONFIG"] == "/etc/recipe.json"


def test_the_ready_banner_names_every_model_and_its_grpc_name():
    lines = ready_lines(Settings(models="acme/one=x,two.v2=y", port=8000, grpc_port=8001), "127.0.0.1")
    assert lines[0] == "Rerank Fleet is ready: models 'acme/one', 'two.v2'"
    assert "(KServe V2 models 'acme_one', 'two_v2')" in lines[2]
