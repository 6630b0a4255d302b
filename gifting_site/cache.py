"""The Django cache as the server processes share it: one Redis pool per process, atomic counters."""

import functools
import threading

import redis
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache


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

    Concurrent processes count exactly; the key expires `timeout` seconds after the window
    began. On Redis this is one round trip: a MULTI that creates the key with its expiry if
    it is new and increments it. (Django's `add` and `incr` take three, and build a client
    object for each call: the throttle cost more than the token lookup.)
    """
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        # Our settings give the Redis cache one server, its LOCATION.
        with _counter_client(settings.CACHES["default"]["LOCATION"]).pipeline(transaction=True) as pipeline:
            cache_key = cache.make_and_validate_key(key)
            pipeline.set(cache_key, 0, ex=timeout, nx=True)
            pipeline.incr(cache_key)
            return pipeline.execute()[1]
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # the key expired between add and incr: this is the window's first event
        cache.add(key, 1, timeout=timeout)
        return 1


def cache_ping() -> bool:
    """Whether the shared cache answers: a PING on Redis; True for the in-process cache."""
    if isinstance(caches["default"], RedisCache):
        return bool(_counter_client(settings.CACHES["default"]["LOCATION"]).ping())
    return True


@functools.cache
def _counter_client(url: str) -> redis.Redis:
    """One client per process for the counters (a client is thread-safe; its pipelines are per call)."""
    return redis.Redis(connection_pool=ProcessWideConnectionPool.from_url(url))
