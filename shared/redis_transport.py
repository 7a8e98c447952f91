"""kombu's Redis transport, with one client object per connection pool instead of one per command.

kombu's Redis channel builds a new `redis.Redis` for every publish and acknowledgement that is not handed
a client. A `redis.Redis` is only a handle on the pool, but building one costs about 45 us
here (redis-py fills a dict of response callbacks each time), and a ranking request makes several: the
API publishes the task and its `task-sent` event, the worker acknowledges it and publishes its events.
This channel keeps one handle per pool; redis-py's client is safe to share between threads, and the
connections still come from, and go back to, kombu's own pool.

Celery uses it through `broker_transport` (shared/celery_app.py) for `redis://` broker URLs.
"""

from __future__ import annotations

from kombu.transport import redis


class Channel(redis.Channel):
    _sync_client = None

    def _create_client(self, asynchronous: bool = False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:  # a reconnect replaces the pool
            client = self._sync_client = super()._create_client()
        return client


class Transport(redis.Transport):
    Channel = Channel
