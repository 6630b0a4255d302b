"""One Redis connection pool per server process for the Django cache."""

import threading

import redis


class ProcessWideConnectionPool(redis.ConnectionPool):
    """Hands every thread the same pool for a URL.

    Django keeps one cache object per thread, and each made its own connection pool. Under an
    ASGI server every request runs in a thread of its own, so every request opened (and left
    behind) a new Redis connection: the connect cost more than the throttle's own commands.
    """

    _pools: dict[str, redis.ConnectionPool] = {}
    _lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs):
        key = f"{url}|{sorted(kwargs.items())}"
        with cls._lock:
            pool = cls._pools.get(key)
            if pool is None:
                pool = cls._pools[key] = redis.ConnectionPool.from_url(url, **kwargs)
        return pool
