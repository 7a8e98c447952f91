"""The engine process: one per device, the only process that loads the model and touches CUDA.

`python -m worker.engine --fd N` is started by the worker's Celery process (worker/engine/client.py) with
one end of a socketpair as fd N. It loads the model, says READY (with the tokenizer, for the Celery process
to tokenize with), then runs the loop (worker/engine/loop.py) on one thread, the only thread of its
interpreter: read the frames that arrived (each a request's pairs as flat arrays), drop requests past their
deadline, form the next batch, run the forward pass, send each finished request's logits back. No Celery, no
Redis, no HTTP here: nothing else competes for the GIL while the device waits for its next pass. It exits
when the Celery process closes its end (or dies: the kernel closes it then).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time

import torch

from shared.log_format import configure_logging
from shared.settings import get_settings
from worker.engine import protocol
from worker.engine.loop import Engine
from worker.engine.protocol import Kind
from worker.engine.scheduler import Scheduler
from worker.engine.threads import fit_cpu_threads
from worker.metrics import EngineMetrics
from worker.model.device import batch_tokens, pass_sizing
from worker.model.runtime import CrossEncoder
from worker.model_source import ModelLoadError
from worker.text.recipes import recipe_json

log = logging.getLogger("worker.engine")


def set_torch_threads(intra_op: int | None) -> None:
    """Before the model loads: `intra_op` threads per forward pass (None: torch's default, the cores) and
    one inter-op thread, since the engine runs one forward pass at a time."""
    if intra_op:
        torch.set_num_threads(intra_op)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only possible before any parallel work
        log.warning("could not set torch inter-op threads; keeping %d", torch.get_num_interop_threads())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.engine", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="this process's end of the socketpair")
    args = parser.parse_args(argv)
    connection = socket.socket(fileno=args.fd)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    metrics = EngineMetrics()
    set_torch_threads(settings.torch_threads)
    started = time.perf_counter()
    try:
        encoder = CrossEncoder.load(settings)
        encoder.warmup()  # on this thread, which runs every pass: torch gives each thread its own OpenMP team
        if encoder.device.type == "cpu" and settings.torch_threads is None:
            fit_cpu_threads(encoder)
    except ModelLoadError as exc:
        connection.sendall(protocol.encode_json(Kind.FATAL, {"message": str(exc)}))
        return 2
    metrics.model_load_seconds.set(time.perf_counter() - started)
    connection.sendall(protocol.encode_json(Kind.READY, {
        "device": str(encoder.device),
        "dtype": str(next(encoder.model.parameters()).dtype).removeprefix("torch."),
        "max_seq_len": encoder.max_seq_len,
        "uses_token_type_ids": encoder.uses_token_type_ids,
        "tokenizer": encoder.tokenizer.to_str(),
        "recipe": recipe_json(encoder.recipe),
        "recipe_origin": encoder.recipe.origin,
        "forward": encoder.layout,
        "pid": os.getpid(),
    }))  # fmt: skip
    protocol.limit_score_frames(protocol.ScoreLimits(  # a request is at most this many pairs (or windows)
        max_pairs=max(settings.max_passages, settings.max_windows_per_request), max_seq_len=encoder.max_seq_len))
    budget = batch_tokens(settings.max_batch_tokens, encoder.device)
    scheduler = Scheduler(
        max_batch_tokens=budget,
        background_batch_tokens=settings.job_batch_tokens,
        background_forward_seconds=settings.job_forward_ms / 1000,
        **pass_sizing(settings.gpu_forward_ms, budget, encoder.device),
    )
    Engine(connection, encoder.launch, scheduler, metrics, overlap=encoder.device.type == "cuda").run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
