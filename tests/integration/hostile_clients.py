"""Helpers of the tests that play a hostile client: an API process whose model has a silent worker, raw
sockets to it, and health probes timed while an attack runs."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator

import httpx

from tests.processes import Proc, silent_worker, start_api


@contextlib.contextmanager
def silent_api(log_dir, redis_server, model_id: str, **settings) -> Iterator[Proc]:
    """An API process (`python -m api`) with `settings`, for a model whose only worker never answers."""
    with silent_worker(redis_server.extra["url"], model_id):
        api = start_api(log_dir, redis_url=redis_server.extra["url"], model="unused", model_id=model_id, **settings)
        try:
            yield api
        finally:
            api.stop()


def connect(api: Proc) -> socket.socket:
    """A raw TCP connection to the API's HTTP port."""
    host, port = api.extra["url"].removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)))


@contextlib.contextmanager
def health_probes(url: str, every: float = 0.02) -> Iterator[list[float]]:
    """Time GET /v1/health/live every `every` s in a thread while the block runs; yields the latencies (s)."""
    stop, latencies = threading.Event(), []

    def probe() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                started = time.monotonic()
                assert client.get(url + "/v1/health/live").status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(every)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    time.sleep(0.3)
    try:
        yield latencies
    finally:
        time.sleep(0.2)
        stop.set()
        thread.join(30)
