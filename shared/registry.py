"""Redis keys through which workers announce the models they serve (readiness, /v1/models, statistics).

- `rerank:models:<model_id>` is a sorted set: member = worker name, score = unix time of its last heartbeat.
- `rerank:worker:<worker name>` is a JSON string describing the worker and its batch statistics;
  it expires when the worker stops sending heartbeats. Its `metrics` field holds the worker's Prometheus
  metric families (worker/metrics.py), which the API's `/metrics` re-exposes labelled by worker; its
  `takes_instruction` field says whether the model's prompt takes an `instruction` (the API refuses one
  before queueing for a model whose workers say it does not).
A worker counts as live while its last heartbeat is younger than `Settings.worker_ttl`.
"""

from __future__ import annotations

MODELS_PREFIX = "rerank:models:"
WORKER_PREFIX = "rerank:worker:"
METRICS_FIELD = "metrics"
TAKES_INSTRUCTION_FIELD = "takes_instruction"


def model_workers_key(model_id: str) -> str:
    return f"{MODELS_PREFIX}{model_id}"


def worker_info_key(worker_name: str) -> str:
    return f"{WORKER_PREFIX}{worker_name}"
