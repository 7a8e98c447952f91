"""Several models in one `rerank-fleet up` (API.md section 5): repeated `--model ID=SOURCE` or RERANK_MODELS, and
the workers each model gets. Every worker serves one model (RERANK_MODEL as RERANK_MODEL_ID) on its own queues;
the API serves them all."""

from __future__ import annotations

import os
import re

from api.ranking.model_names import grpc_model_name
from shared.settings import Settings, derive_model_id


def model_overrides(models: list[str] | None, model_id: str | None) -> dict[str, str | None]:
    """Settings overrides for the `--model` options: one bare SOURCE keeps today's meaning (its id from
    `--model-id` or derived), one `ID=SOURCE` names its id, several become RERANK_MODELS. ValueError if they clash.

    Local directories are made absolute: the children may start elsewhere."""
    if not models:
        return {"model_id": model_id} if model_id else {}
    pairs = []
    for option in models:
        given_id, source = option.split("=", 1) if "=" in option and not os.path.isdir(option) else (None, option)
        if given_id is not None and model_id:
            raise ValueError(f"--model {option} names its id already; leave out --model-id")
        source = os.path.abspath(source) if os.path.isdir(source) else source
        pairs.append((given_id or model_id or derive_model_id(source), source))
    if len(pairs) == 1:  # the command line wins over RERANK_MODELS
        return {"model": pairs[0][1], "model_id": pairs[0][0], "models": None}
    if model_id:
        raise ValueError("--model-id names the id of a single --model; with several, write --model ID=SOURCE")
    return {"models": ",".join(f"{given_id}={source}" for given_id, source in pairs)}


def worker_envs(settings: Settings, env: dict[str, str], gpus: list[str], cpu_envs) -> list[tuple[str, dict[str, str]]]:
    """(child name, environment) of every worker: for each model, one per visible GPU, else RERANK_CPU_WORKERS
    CPU workers; `cpu_envs(env, workers, torch_threads)` shares the cores among all the CPU workers of all models."""
    sources = settings.model_sources
    if len(sources) > 1 and settings.recipe_file:
        raise RuntimeError("RERANK_MODEL_CONFIG names one recipe for one model; with several models, put a "
                           "rerank_config.json in each model's directory instead")  # fmt: skip
    if gpus:
        per_model = [{**env, "CUDA_VISIBLE_DEVICES": gpu, "RERANK_DEVICE": "cuda"} for gpu in gpus]
    else:
        shared_out = cpu_envs(env, settings.cpu_workers * len(sources), settings.torch_threads)
        per_model = shared_out[: settings.cpu_workers]
    named = []
    for model_id, source in sources:
        label = "worker" if len(sources) == 1 else f"worker-{re.sub(r'[^A-Za-z0-9_.-]+', '-', model_id)}"
        for number, worker_env in enumerate(per_model):
            named.append((f"{label}-{number}", {**worker_env, "RERANK_MODEL": source, "RERANK_MODEL_ID": model_id}))
    return named


def ready_lines(settings: Settings, host: str) -> list[str]:
    """The ready banner's lines about the models: their ids and, with gRPC on, their KServe V2 names."""
    if len(settings.model_ids) == 1:
        lines = [f"Rerank Fleet is ready: model {settings.model_ids[0]!r}"]
    else:
        lines = [f"Rerank Fleet is ready: models {', '.join(repr(model_id) for model_id in settings.model_ids)}"]
    base = f"http://{host}:{settings.port}"
    lines.append(f"  HTTP    {base}/v1/ranking   (models: {base}/v1/models, docs: {base}/docs)")
    if settings.grpc_port:
        names = ", ".join(repr(grpc_model_name(model_id)) for model_id in settings.model_ids)
        plural = "s" if len(settings.model_ids) > 1 else ""
        lines.append(f"  gRPC    {host}:{settings.grpc_port}   (KServe V2 model{plural} {names})")
    return lines
