"""The database pool after PostgreSQL has cut every connection in it (a failover, a restart)."""

import time

import pytest
from django.db import connection

from gifting_site.postgresql.base import CheckedConnectionPool, DatabaseWrapper

pytestmark = [
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the pool is PostgreSQL's"),
    pytest.mark.django_db(transaction=True),
]

POOL_SIZE = 4
# Long enough for a new connection on a loaded machine, shorter than psycopg_pool's own pauses
# between dead connections (1 s, 2 s, 4 s: 7 s for four), which this pool does without.
TIMEOUT = 3


def pooled_wrapper() -> DatabaseWrapper:
    settings = {**connection.settings_dict}
    settings["OPTIONS"] = {
        **settings.get("OPTIONS", {}),
        "pool": {"min_size": POOL_SIZE, "max_size": POOL_SIZE, "timeout": TIMEOUT},
    }
    settings["CONN_MAX_AGE"], settings["CONN_HEALTH_CHECKS"] = 0, True
    return DatabaseWrapper(settings, alias="pool-under-test")


def backend_pid(wrapper: DatabaseWrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def terminate(pids: set[int]) -> None:
    """Terminates the backends, and returns once they are gone (pg_terminate_backend only signals them)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [list(pids)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [list(pids)])
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.01)
    raise AssertionError(f"backends {pids} outlived pg_terminate_backend")


def test_a_request_after_every_pooled_connection_was_cut_gets_a_working_one():
    wrapper = pooled_wrapper()
    pool = wrapper.pool
    assert isinstance(pool, CheckedConnectionPool)
    try:
        pool.open(wait=True)
        # Given a full pool, every connection of which PostgreSQL has since terminated
        held = [pool.getconn() for _ in range(POOL_SIZE)]
        pids = {held_connection.info.backend_pid for held_connection in held}
        for held_connection in held:
            pool.putconn(held_connection)
        terminate(pids)

        # When a request asks for a connection, then it gets a new, working one within the
        # timeout: each dead one is replaced, not waited on
        pid = backend_pid(wrapper)
        assert pid not in pids
        wrapper.close()  # the request ends: the connection goes back to the pool

        # and the next requests are served by live connections too
        assert backend_pid(wrapper) not in pids
        wrapper.close()
    finally:
        wrapper.close_pool()


def test_a_live_connection_is_handed_out_without_a_round_trip_and_a_cut_one_is_proven_dead():
    wrapper = pooled_wrapper()
    pool = wrapper.pool
    checked = []
    full_check = pool.check_connection

    def counted_check(pooled_connection):
        checked.append(pooled_connection.info.backend_pid)
        full_check(pooled_connection)

    pool.check_connection = counted_check
    try:
        pool.open(wait=True)
        # Given pooled connections PostgreSQL left alone
        first = backend_pid(wrapper)
        wrapper.close()
        second = backend_pid(wrapper)
        wrapper.close()
        # then they were handed out with no query to prove them
        assert checked == []

        # Given every one of them terminated while idle in the pool
        held = [pool.getconn() for _ in range(POOL_SIZE)]
        pids = {held_connection.info.backend_pid for held_connection in held} | {first, second}
        for held_connection in held:
            pool.putconn(held_connection)
        terminate(pids)

        # then a request gets a working connection, after the check found the cut ones dead
        assert backend_pid(wrapper) not in pids
        wrapper.close()
        assert checked and set(checked) <= pids
    finally:
        wrapper.close_pool()


def test_a_pool_for_an_unreachable_database_still_times_out():
    from psycopg_pool import PoolTimeout

    wrapper = pooled_wrapper()
    wrapper.settings_dict["PORT"] = 1  # nothing listens there
    pool = wrapper.pool
    try:
        pool.open(wait=False)
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.5)
    finally:
        wrapper.close_pool()
