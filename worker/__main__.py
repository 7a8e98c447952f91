"""Worker process entrypoint (`python -m worker`): load the model, then consume its queue with Celery.

The model is loaded before Celery starts, in this process (no fork follows, so CUDA is initialised
only here); a model that cannot be loaded ends the process at once with one readable line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time

import redis
import torch
from celery import signals

from shared.celery_app import batch_queue, interactive_queue, worker_queues
from shared.log_format import configure_logging
from shared.registry import METRICS_FIELD
from shared.settings import get_settings
from worker import broker_guard
from worker.batching import MicroBatcher
from worker.device import batch_tokens, favour_model_thread
from worker.heartbeat import Heartbeat
from worker.metrics import WorkerMetrics
from worker.model_source import ModelLoadError
from worker.runtime import CrossEncoder
from worker.task_signals import install_task_signals
from worker import job_tasks  # noqa: F401  (registers the batch-job chunk task)
from worker.job_sweeper import JobSweeper
from worker.tasks import WorkerState, app, install_state

log = logging.getLogger("worker")


def worker_name(model_id: str, device: torch.device) -> str:
    """Celery node name, readable in Flower: model, device (the host's GPU id) and pid, then the host.

    The pid keeps several workers of one host apart (two CPU workers, or a restarted one).
    """
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model_id).strip("-")
    label = "cpu"
    if device.type == "cuda":
        label = "gpu" + (os.environ.get("CUDA_VISIBLE_DEVICES") or str(device.index or 0)).replace(",", "+")
    return f"rerank-{slug}-{label}-{os.getpid()}@%h"


def set_torch_threads(intra_op: int | None) -> None:
    """Before the model loads: `intra_op` threads per forward pass (None: torch's default, the cores) and
    one inter-op thread, since one model thread runs one forward pass at a time."""
    if intra_op:
        torch.set_num_threads(intra_op)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only possible before any parallel work; an embedding host may have started some
        log.warning("could not set torch inter-op threads; keeping %d", torch.get_num_interop_threads())


def main() -> int:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.models and "model" not in settings.model_fields_set:
        print("rerank-fleet worker: RERANK_MODELS lists the fleet's models, but a worker serves one: set "
              "RERANK_MODEL (and RERANK_MODEL_ID) for it", file=sys.stderr)  # fmt: skip
        return 2
    model_id = settings.served_model_id
    metrics = WorkerMetrics()
    install_task_signals(metrics)
    set_torch_threads(settings.torch_threads)
    load_started = time.perf_counter()
    try:
        encoder = CrossEncoder.load(settings)
    except ModelLoadError as exc:
        print(f"rerank-fleet worker: {exc}", file=sys.stderr)
        return 2
    favour_model_thread(encoder.device)
    batcher = MicroBatcher(
        metrics.observe_score(encoder.score),
        max_batch_tokens=batch_tokens(settings.max_batch_tokens, encoder.device),
        background_batch_tokens=settings.job_batch_tokens,
        background_forward_seconds=settings.job_forward_ms / 1000,
    ).start(warmup=encoder.warmup)  # the first pass on the model thread, which runs every pass
    metrics.model_load_seconds.set(time.perf_counter() - load_started)
    install_state(WorkerState(model_id=model_id, encoder=encoder, batcher=batcher))
    name = worker_name(model_id, encoder.device)
    background: list[Heartbeat | JobSweeper] = []  # threads started once the worker consumes

    @signals.worker_ready.connect(weak=False)
    def _announce(sender, **_) -> None:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
        heartbeat = Heartbeat(
            client,
            worker_name=sender.hostname,
            model_id=model_id,
            describe=lambda: {
                "device": str(encoder.device),
                "max_seq_len": encoder.max_seq_len,
                "batch_stats": batcher.stats.as_dict(),
                METRICS_FIELD: metrics.snapshot(),
            },
            interval=settings.heartbeat_interval,
            ttl=settings.worker_ttl,
        )
        sweeper = JobSweeper(client, visibility_timeout=settings.job_visibility_timeout)
        for thread in (heartbeat, sweeper):
            thread.start()
            background.append(thread)
        log.info("serving %s as %s on queues %s, %s", model_id, sender.hostname, interactive_queue(model_id),
                 batch_queue(model_id))  # fmt: skip

    @signals.worker_shutdown.connect(weak=False)
    def _withdraw(**_) -> None:
        for thread in background:
            thread.stop()

    broker_guard.install()
    app.conf.task_queues = worker_queues(model_id)
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={settings.worker_concurrency}",
            f"--queues={interactive_queue(model_id)},{batch_queue(model_id)}",
            f"--hostname={name}",
            f"--loglevel={settings.log_level.upper()}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    batcher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
