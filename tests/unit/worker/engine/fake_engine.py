"""An engine process with a fake model, for testing the Celery side's client against a real process and socket.

    python -m tests.unit.worker.engine.fake_engine --fd N [--pass-seconds S] [--fatal MESSAGE]

Its model scores a pair as its first token id and takes `--pass-seconds` per forward pass; `--fatal` makes it
refuse to start, as an engine whose model cannot be loaded does. It runs the real engine loop (worker/engine/loop.py), without torch.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

import numpy as np

from worker.engine import protocol
from worker.engine.loop import Engine
from worker.engine.protocol import Kind
from worker.engine.scheduler import Scheduler
from worker.metrics import EngineMetrics


def fake_model(pass_seconds: float, connection: socket.socket | None = None):
    """`launch` of a model that scores a pair as its first token; a batch holding token 666 fails when awaited,
    as a CUDA error surfaces when the device is synchronised; one holding token 667 makes the engine send a
    RESULT frame too short to hold a result (a broken stream)."""

    def launch(pairs):
        if connection is not None and (pairs.input_ids == 667).any():
            connection.sendall(protocol.HEADER.pack(3, Kind.RESULT) + b"bad")
        time.sleep(pass_seconds)
        logits = pairs.input_ids[pairs.starts].astype(np.float32)

        def result() -> tuple[np.ndarray, None]:
            if (pairs.input_ids == 666).any():
                raise RuntimeError("the fake model cannot score token 666")
            return logits, None

        return result

    return launch


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--pass-seconds", type=float, default=0.0)
    parser.add_argument("--fatal")
    parser.add_argument("--overlap", action="store_true", help="await each pass after queueing the next, as on CUDA")
    args = parser.parse_args()
    connection = socket.socket(fileno=args.fd)
    if args.fatal:
        connection.sendall(protocol.encode_json(Kind.FATAL, {"message": args.fatal}))
        return 2
    connection.sendall(protocol.encode_json(Kind.READY, {"device": "cpu", "max_seq_len": 512, "pid": 0}))
    Engine(connection, fake_model(args.pass_seconds, connection), Scheduler(max_batch_tokens=64), EngineMetrics(),
           overlap=args.overlap).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
