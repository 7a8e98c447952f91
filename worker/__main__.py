"""Worker entrypoint (`python -m worker`): start the engine process, then consume the model's queues with Celery.

This is the worker's Celery process. It imports no torch: the engine process it starts
(`python -m worker.engine`, worker/engine/) loads the model, so CUDA is initialised only there, after no
fork. Once the engine has loaded the model this process takes the tokenizer from it, announces itself and
consumes; task threads tokenize and hand compact arrays to the engine. While the engine is down (it is
started again by worker/engine/client.py), the worker withdraws its registration and stops consuming, so
requests go to other workers. A model that cannot be loaded ends the process at once with one line.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys

import redis
from celery import signals
from tokenizers import Tokenizer

from shared.celery_app import batch_queue, interactive_queue, worker_queues
from shared.log_format import configure_logging
from shared.registry import METRICS_FIELD, TAKES_INSTRUCTION_FIELD
from shared.settings import Settings, get_settings
from worker.engine.client import EngineClient
from worker.metrics import TaskMetrics, merge_snapshots
from worker.model_source import ModelLoadError
from worker.tasks import broker_guard, job_chunks, rank  # noqa: F401  (registers the tasks)
from worker.tasks.app import WorkerState, app, install_state
from worker.tasks.heartbeat import Heartbeat
from worker.tasks.job_sweeper import JobSweeper
from worker.tasks.signals import install_task_signals
from worker.text.prompting import text_encoder
from worker.text.recipes import parse_recipe

log = logging.getLogger("worker")


def worker_name(model_id: str, device: str) -> str:
    """Celery node name, readable in Flower: model, device (the host's GPU id), pid and a start token, then the host.

    The pid keeps several workers of one host apart (two CPU workers); the random start token keeps a restarted
    worker apart from the one it replaces even where pid and host repeat (a container restarted by Docker is
    pid 1 on the same hostname again): the API sees the old name's heartbeats stop and resends its requests.
    """
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model_id).strip("-")
    label = "cpu"
    if device.startswith("cuda"):
        label = "gpu" + (os.environ.get("CUDA_VISIBLE_DEVICES") or device.partition(":")[2] or "0").replace(",", "+")
    return f"rerank-{slug}-{label}-{os.getpid()}-{secrets.token_hex(3)}@%h"


class Worker:
    """The Celery side of one worker: its engine, its registration, and the queues it consumes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_id = settings.served_model_id
        self.metrics = TaskMetrics()
        self.engine = EngineClient(metrics=self.metrics, on_up=self._engine_up, on_down=self._engine_down)
        self.queues = [interactive_queue(self.model_id), batch_queue(self.model_id)]
        self.hostname: str | None = None  # Celery's node name, once it consumes
        self.heartbeat: Heartbeat | None = None
        self.sweeper: JobSweeper | None = None
        self.engine_info: dict = {}  # what the engine said of itself when it last loaded the model
        self.takes_instruction = False  # whether the model's prompt has an {instruction} (announced)
        self._last_engine_stats: dict = {}

    def start_engine(self) -> dict:
        self.engine_info = info = self.engine.start()
        recipe = parse_recipe(info["recipe"], info["recipe_origin"])
        self.takes_instruction = recipe.takes_instruction
        tokenizer = text_encoder(Tokenizer.from_str(info["tokenizer"]), recipe, max_seq_len=info["max_seq_len"],
                                 uses_type_ids=info["uses_token_type_ids"])  # fmt: skip
        install_state(WorkerState(model_id=self.model_id, tokenizer=tokenizer, engine=self.engine))
        log.info("engine (pid %s) serves %s on %s (%s, %s forward, %s from %s), token limit %d", info["pid"],
                 self.model_id, info["device"], info["dtype"], info["forward"], recipe.score.type, recipe.origin,
                 info["max_seq_len"])  # fmt: skip
        return info

    def describe(self) -> dict | None:
        """What the heartbeat announces; None while the engine is down (the worker then withdraws)."""
        if not self.engine.ready:
            return None
        # the engine answers between passes: wait at most half a beat, so that a long pass never makes the
        # registration outlive its TTL (3 beats), and announce the last statistics instead
        stats = self.engine.stats(timeout=min(2.0, self.settings.heartbeat_interval / 2)) or self._last_engine_stats
        self._last_engine_stats = stats
        info = self.engine_info
        return {
            "device": info["device"],
            "max_seq_len": info["max_seq_len"],
            "engine_pid": self.engine.pid,
            TAKES_INSTRUCTION_FIELD: self.takes_instruction,
            "batch_stats": stats.get("batch_stats", {}),
            METRICS_FIELD: merge_snapshots(self.metrics.snapshot(), stats.get("metrics", [])),
        }

    def announce(self, sender) -> None:
        """Once Celery consumes: heartbeats and the job sweeper."""
        self.hostname = sender.hostname
        client = redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
        self.heartbeat = Heartbeat(client, worker_name=sender.hostname, model_id=self.model_id, describe=self.describe,
                                   interval=self.settings.heartbeat_interval, ttl=self.settings.worker_ttl)  # fmt: skip
        self.sweeper = JobSweeper(client, visibility_timeout=self.settings.job_visibility_timeout)
        self.heartbeat.start()
        self.sweeper.start()
        log.info("serving %s as %s on queues %s", self.model_id, sender.hostname, ", ".join(self.queues))

    def withdraw(self) -> None:
        for thread in (self.heartbeat, self.sweeper):
            if thread is not None:
                thread.stop()

    def _engine_down(self) -> None:
        """The engine stopped: no more announcements, no more tasks taken until a new one has loaded."""
        if self.heartbeat is not None:
            self.heartbeat.withdraw()
        if self.hostname is not None:
            for queue in self.queues:
                app.control.cancel_consumer(queue, destination=[self.hostname], reply=False)

    def _engine_up(self, info: dict) -> None:
        self.engine_info = info
        if self.hostname is not None:
            for queue in self.queues:
                app.control.add_consumer(queue, destination=[self.hostname], reply=False)
        if self.heartbeat is not None:
            self.heartbeat.beat()


def main() -> int:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.models and "model" not in settings.model_fields_set:
        print("rerank-fleet worker: RERANK_MODELS lists the fleet's models, but a worker serves one: set "
              "RERANK_MODEL (and RERANK_MODEL_ID) for it", file=sys.stderr)  # fmt: skip
        return 2
    worker = Worker(settings)
    install_task_signals(worker.metrics)
    try:
        worker.start_engine()
    except ModelLoadError as exc:
        print(f"rerank-fleet worker: {exc}", file=sys.stderr)
        return 2
    signals.worker_ready.connect(lambda sender, **_: worker.announce(sender), weak=False)
    signals.worker_shutdown.connect(lambda **_: worker.withdraw(), weak=False)
    broker_guard.install()
    app.conf.task_queues = worker_queues(worker.model_id)
    try:
        app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={settings.worker_concurrency}",
                f"--queues={','.join(worker.queues)}",
                f"--hostname={worker_name(worker.model_id, worker.engine_info['device'])}",
                f"--loglevel={settings.log_level.upper()}",
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        worker.engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
