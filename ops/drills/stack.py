"""The fleet a drill runs against: its own redis-server, workers and API on free ports, stopped afterwards."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ops.models.builder import build_bert, build_minilm
from ops.processes import Proc, start_api, start_redis, start_worker

MODEL_ID = "minilm-l6-cross-encoder"  # the benchmarks' id (ops/bench/jobs.py)


@dataclass
class DrillStack:
    model_dir: str
    log_dir: Path
    redis: Proc
    workers: list[Proc]
    api: Proc
    worker_settings: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.api.extra["url"]

    @property
    def redis_url(self) -> str:
        return self.redis.extra["url"]

    def add_worker(self) -> Proc:
        worker = start_worker(self.log_dir, redis_url=self.redis_url, model=self.model_dir, model_id=MODEL_ID,
                              **self.worker_settings)  # fmt: skip
        self.workers.append(worker)
        return worker


@contextlib.contextmanager
def drill_stack(
    *,
    model: str = "minilm",
    workers: int = 1,
    appendonly: bool = False,
    api_settings: dict | None = None,
    worker_settings: dict | None = None,
) -> Iterator[DrillStack]:
    """Redis, `workers` CPU workers and one API process serving MODEL_ID (`model`: minilm or tiny)."""
    log_dir = Path(tempfile.mkdtemp(prefix="rerank-drill-"))
    model_dir = str((build_minilm if model == "minilm" else build_bert)(log_dir / "model"))
    redis = start_redis(log_dir, appendonly=appendonly)
    stack = DrillStack(model_dir, log_dir, redis, [], None, dict(worker_settings or {}))  # type: ignore[arg-type]
    try:
        for _ in range(workers):
            stack.add_worker()
        stack.api = start_api(log_dir, redis_url=redis.extra["url"], model=model_dir, model_id=MODEL_ID,
                              **(api_settings or {}))  # fmt: skip
        yield stack
    finally:
        for proc in [stack.api, *stack.workers, stack.redis]:
            if proc is not None:
                proc.stop()
        shutil.rmtree(log_dir, ignore_errors=True)
