"""The job sweeper against a real Redis: which chunks it queues again, and which it leaves alone."""

import time

import pytest
import redis

from shared.job_keys import JOBS_INDEX, done_key, job_key, leases_key
from tests.processes import start_redis
from worker.tasks import job_chunks, job_sweeper


@pytest.fixture
def client(tmp_path):
    server = start_redis(tmp_path)
    yield redis.Redis.from_url(server.extra["url"])
    server.stop()


@pytest.fixture
def queued(monkeypatch):
    sent = []
    monkeypatch.setattr(job_chunks, "send_job_chunk", lambda app, **chunk: sent.append((chunk["job_id"], chunk["chunk"])))
    return sent


def make_job(client, job_id, status="running", *, done=(), leases=None):
    client.hset(job_key(job_id), mapping={"status": status, "chunks_total": 6, "window": 2, "model": "m"})
    client.zadd(JOBS_INDEX, {job_id: time.time()})
    if done:
        client.sadd(done_key(job_id), *done)
    if leases:
        client.hset(leases_key(job_id), mapping=leases)


def test_lapsed_leases_are_queued_again_and_fresh_ones_left_alone(client, queued):
    now = time.time()
    make_job(client, "a", done=(0, 2), leases={1: now - 100, 3: now})
    sweeper = job_sweeper.JobSweeper(client, visibility_timeout=30)
    assert sweeper.sweep() == 1
    assert queued == [("a", 1)]
    assert float(client.hget(leases_key("a"), 1)) > now  # leased again before it was queued


def test_a_chunk_the_window_chain_lost_is_queued_on_the_second_sweep(client, queued):
    now = time.time()
    make_job(client, "b", done=(0, 1, 2), leases={3: now})  # chunk 4 is due (2 is done), 5 is not (3 is not)
    sweeper = job_sweeper.JobSweeper(client, visibility_timeout=30)
    assert sweeper.sweep() == 0  # could be the instant between a commit and the next chunk's lease
    assert sweeper.sweep() == 1
    assert queued == [("b", 4)]


def test_finished_and_cancelled_jobs_are_not_swept(client, queued):
    make_job(client, "c", status="cancelled", leases={1: 0})
    make_job(client, "d", status="succeeded", leases={1: 0})
    assert job_sweeper.JobSweeper(client, visibility_timeout=30).sweep() == 0
    assert queued == []
