"""The broker side of Celery against a real Redis: one client per pool, and which queues keep unacked records."""

from __future__ import annotations

import redis

from shared.celery_app import RANK_TASK, batch_queue, create_celery_app, interactive_queue, worker_queues
from shared.redis_transport import Channel
from shared.settings import Settings

UNACKED = "unacked"  # kombu's Redis hash of delivered, unacknowledged messages


def test_the_channel_keeps_one_redis_client_per_pool(redis_server):
    app = create_celery_app(Settings(redis_url=redis_server.extra["url"]))
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        assert isinstance(channel, Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        channel._disconnect_pools()  # what kombu does after a connection error
        with channel.conn_or_acquire() as fresh:
            assert fresh is not first and fresh.connection_pool is channel.pool
            assert fresh.ping()


def test_other_redis_schemes_keep_kombus_transport():
    assert create_celery_app(Settings(redis_url="rediss://redis.example:6380/0")).conf.broker_transport is None


def test_worker_queues_are_the_queues_the_api_sends_to():
    app = create_celery_app(Settings(redis_url="redis://127.0.0.1:1/0"), result_backend=False)
    for declared in worker_queues("some-model"):
        sent_to = app.amqp.queues[declared.name]  # what Celery builds for a queue named in send_task
        assert (declared.exchange.name, declared.exchange.type, declared.routing_key) == (
            sent_to.exchange.name, sent_to.exchange.type, sent_to.routing_key)  # fmt: skip
    assert [queue.no_ack for queue in worker_queues("some-model")] == [True, False]


def test_interactive_messages_leave_no_unacked_record_and_batch_chunks_keep_one(redis_server):
    url, model = redis_server.extra["url"], "transport-test"
    client = redis.Redis.from_url(url)
    app = create_celery_app(Settings(redis_url=url), result_backend=False)
    held = {}
    with app.connection_for_read() as connection:
        for queue in worker_queues(model):
            app.send_task(RANK_TASK, args=[{}], queue=queue.name, retry=False)
            with connection.Consumer(queue, callbacks=[lambda body, message: held.update(message=message)]):
                connection.drain_events(timeout=5)
            recorded = client.hlen(UNACKED)  # the message is delivered and not acknowledged yet
            held.pop("message").ack()
            assert recorded == (0 if queue.no_ack else 1), queue.name
            assert client.hlen(UNACKED) == 0
    assert [queue.name for queue in worker_queues(model)] == [interactive_queue(model), batch_queue(model)]
