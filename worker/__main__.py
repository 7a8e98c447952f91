"""Worker process entrypoint (`python -m worker`): load the model, then consume its queue with Celery.

The model is loaded before Celery starts, in this process (no fork follows, so CUDA is initialised
only here); a model that cannot be loaded ends the process at once with one readable line.
"""

from __future__ import annotations

import logging
import re
import sys

import redis
from celery import signals

from shared.celery_app import interactive_queue
from shared.settings import get_settings
from worker.batching import MicroBatcher
from worker.heartbeat import Heartbeat
from worker.model_source import ModelLoadError
from worker.runtime import CrossEncoder
from worker.tasks import WorkerState, app, install_state

log = logging.getLogger("worker")


def worker_name(model_id: str, device: str) -> str:
    """Celery node name, readable in Flower: the model and device before the host."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model_id).strip("-")
    return f"rerank-{slug}-{device}@%h"


def main() -> int:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    model_id = settings.served_model_id
    try:
        encoder = CrossEncoder.load(settings)
    except ModelLoadError as exc:
        print(f"rerank-fleet worker: {exc}", file=sys.stderr)
        return 2
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    batcher = MicroBatcher(encoder.score, max_batch_tokens=settings.max_batch_tokens).start()
    install_state(WorkerState(model_id=model_id, encoder=encoder, batcher=batcher))
    device = f"{encoder.device.type}{encoder.device.index or 0}" if encoder.device.type == "cuda" else "cpu"
    name = worker_name(model_id, device)
    heartbeat_holder: list[Heartbeat] = []

    @signals.worker_ready.connect(weak=False)
    def _announce(sender, **_) -> None:
        heartbeat = Heartbeat(
            redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5),
            worker_name=sender.hostname,
            model_id=model_id,
            describe=lambda: {
                "device": str(encoder.device),
                "max_seq_len": encoder.max_seq_len,
                "batch_stats": batcher.stats.as_dict(),
            },
            interval=settings.heartbeat_interval,
            ttl=settings.worker_ttl,
        )
        heartbeat.start()
        heartbeat_holder.append(heartbeat)
        log.info("serving %s as %s on queue %s", model_id, sender.hostname, interactive_queue(model_id))

    @signals.worker_shutdown.connect(weak=False)
    def _withdraw(**_) -> None:
        for heartbeat in heartbeat_holder:
            heartbeat.stop()

    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={settings.worker_concurrency}",
            f"--queues={interactive_queue(model_id)}",
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
