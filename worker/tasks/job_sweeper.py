"""Re-queues batch-job chunks that were lost, so that a job always finishes.

Celery's Redis transport restores a chunk held by a worker that died, after the visibility timeout,
but it can lose a message popped by a worker killed before the message was recorded as unacknowledged
(kombu issues #305, #1836). So every worker also runs this sweeper, one sweep at a time fleet-wide
(a Redis lock), which queues again a chunk of a running job when:
- its lease (shared/job_keys.leases_key) is older than RERANK_JOB_VISIBILITY_TIMEOUT: queued or started
  and then lost (leases of running chunks are renewed by the worker running them, here too), or
- it has no lease although the chunk RERANK_JOB_WINDOW before it is done, in two sweeps running: the run
  that committed that chunk died before queueing this one.
A chunk queued twice is harmless: it commits once.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from shared.job_keys import JOBS_INDEX, done_key, job_key, leases_key
from worker.tasks.job_chunks import queue_chunk, running_chunks

log = logging.getLogger(__name__)

SWEEP_LOCK = "rerank:job-sweeper"


class JobSweeper:
    def __init__(self, client: redis.Redis, *, visibility_timeout: float) -> None:
        self._client = client
        self._visibility_timeout = visibility_timeout
        self.interval = max(1.0, visibility_timeout / 3)
        self._suspects: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                running_chunks.renew_leases(self._client)
                if self._client.set(SWEEP_LOCK, 1, nx=True, px=int(self.interval * 900)):
                    self.sweep()
            except redis.RedisError as exc:
                log.warning("job sweep skipped: %s", exc)

    def sweep(self) -> int:
        """One pass over the running jobs; returns how many chunks it queued again."""
        now, requeued, suspects = time.time(), 0, set()
        for raw_id in self._client.zrange(JOBS_INDEX, 0, -1):
            job_id = raw_id.decode()
            status, total, window, model = self._client.hmget(job_key(job_id), "status", "chunks_total", "window", "model")
            if status not in (b"queued", b"running") or not total or not window:
                continue
            total, window = int(total), int(window)
            done = {int(chunk) for chunk in self._client.smembers(done_key(job_id))}
            leases = {int(c): float(t) for c, t in self._client.hgetall(leases_key(job_id)).items()}
            for chunk in range(total):
                if chunk in done:
                    continue
                lease = leases.get(chunk)
                if lease is None:
                    if not (chunk < window or chunk - window in done):
                        continue  # not due yet: its predecessor in the window chain will queue it
                    suspects.add((job_id, chunk))
                    if (job_id, chunk) not in self._suspects:
                        continue
                elif now - lease <= self._visibility_timeout:
                    continue
                log.warning("job %s: chunk %d was lost; queueing it again", job_id, chunk)
                queue_chunk(self._client, job_id=job_id, model=model.decode(), chunk=chunk, window=window)
                requeued += 1
        self._suspects = suspects
        return requeued
