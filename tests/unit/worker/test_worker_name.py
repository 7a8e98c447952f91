"""A worker's Celery node name (worker/__main__.py: worker_name)."""

from __future__ import annotations

import os
import re

from worker.__main__ import worker_name


def test_a_restart_with_the_same_pid_and_host_gets_a_new_name() -> None:
    """A container restarted by Docker is pid 1 on the same hostname again: its new worker must not reuse the
    dead one's name, or the API takes the old name's heartbeats as still alive and never resends its requests."""
    first, second = worker_name("cross-encoder/ms-marco", "cpu"), worker_name("cross-encoder/ms-marco", "cpu")
    assert first != second
    for name in (first, second):
        assert re.fullmatch(rf"rerank-cross-encoder-ms-marco-cpu-{os.getpid()}-[0-9a-f]{{6}}@%h", name), name
