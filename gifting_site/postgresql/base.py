"""Django's PostgreSQL backend, with a connection pool that recovers at once from cut connections.

When PostgreSQL's backends are terminated (a failover, a restart, an operator's
pg_terminate_backend), every connection waiting in the pool is dead. psycopg_pool checks a
connection as it hands it out and, when the check fails, sleeps before trying the next one:
1 s, then 2 s, then 4 s. With eight dead connections in the pool a request waited out the
whole pool timeout (10 s) although PostgreSQL was accepting connections again all along.

`CheckedConnectionPool` checks as it hands out too, but goes straight on to the next
connection: a connection that fails is discarded and the pool opens its replacement at once,
so there is nothing to wait for. Only an empty pool waits, for a new connection, and only a
database that cannot be reached makes a request wait the whole timeout.

The check costs a round trip only when something has arrived on the connection. PostgreSQL
sends an idle connection nothing unless it ends it: a terminated backend sends its FATAL
error and closes the socket, a server going down closes it. Either makes the socket
readable, so a connection whose socket is quiet is handed out as it is (a poll of one file
descriptor), and only one that is not gets the query that proves it. Every request checks a
connection out, so this is one round trip less per request.
"""

import select
from time import monotonic

from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg import Connection
from psycopg.pq import ConnStatus
from psycopg_pool import ConnectionPool


class CheckedConnectionPool(ConnectionPool):
    def __init__(self, *args, check_connections: bool = True, **kwargs):
        # The pool's own check (and its pause) stays off; getconn checks instead.
        super().__init__(*args, check=None, **kwargs)
        self.check_connections = check_connections

    def getconn(self, timeout: float | None = None) -> Connection:
        deadline = monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            # Raises PoolTimeout once the deadline has passed.
            connection = super().getconn(timeout=max(deadline - monotonic(), 0.0))
            if not self.check_connections or _quiet(connection):
                return connection
            try:
                self.check_connection(connection)
            except Exception:
                # Broken: putconn discards it and opens a replacement.
                self.putconn(connection)
                continue
            return connection


def _quiet(connection: Connection) -> bool:
    """Whether this idle connection is open and nothing has arrived on it since its last answer."""
    if connection.closed or connection.pgconn.status != ConnStatus.OK:
        return False
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    return not poller.poll(0)  # an error or a hang-up is reported whatever was asked for


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        options = self.settings_dict["OPTIONS"].get("pool")
        if options and self.alias != NO_DB_ALIAS and self.alias not in self._connection_pools:
            # As Django builds its pool (django.db.backends.postgresql.base), with the class above.
            connect_kwargs = self.get_connection_params()
            connect_kwargs["autocommit"] = True
            pool = CheckedConnectionPool(
                kwargs=connect_kwargs,
                open=False,
                configure=self._configure_connection,
                check_connections=self.settings_dict["CONN_HEALTH_CHECKS"],
                **({} if options is True else options),
            )
            self._connection_pools.setdefault(self.alias, pool)
        return super().pool
