"""The Django cache as the server processes share it: one Redis pool per process, atomic counters."""

import threading

import redis
from django.core.cache import cache


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


def window_count(key: str, *, timeout: int) -> int:
    """Count one more event under `key` (one key per fixed time window) and return the count.

    `add` then `incr` are both atomic in Redis, so concurrent processes count exactly; the key
    expires `timeout` seconds after the window began.
    """
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # the key expired between add and incr: this is the window's first event
        cache.add(key, 1, timeout=timeout)
        return 1
