"""`rerank-fleet up`'s CPU workers: how many, and how many torch threads each gets."""

from api.cli.launcher import cpu_worker_envs


def test_one_cpu_worker_keeps_torchs_own_thread_count():
    (env,) = cpu_worker_envs({"PATH": "/bin"}, 1, None)
    assert "RERANK_TORCH_THREADS" not in env
    assert env["RERANK_DEVICE"] == "cpu" and env["CUDA_VISIBLE_DEVICES"] == "" and env["PATH"] == "/bin"


def test_several_cpu_workers_share_the_cores_unless_threads_are_set(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    envs = cpu_worker_envs({}, 3, None)
    assert [env["RERANK_TORCH_THREADS"] for env in envs] == ["2", "2", "2"]
    assert [env["RERANK_TORCH_THREADS"] for env in cpu_worker_envs({}, 16, None)] == ["1"] * 16
    explicit = cpu_worker_envs({"RERANK_TORCH_THREADS": "4"}, 2, 4)
    assert [env["RERANK_TORCH_THREADS"] for env in explicit] == ["4", "4"]
    envs[0]["X"] = "1"
    assert "X" not in envs[1]  # each worker has an environment of its own
