"""Waking the relays when there is something to deliver, so that none has to keep asking.

A transaction that leaves game deliveries pending (a gift batch, staff delivering a failed
gift again, staff lifting a pause) calls `relays_wake()`. On PostgreSQL that is a NOTIFY
on RELAY_CHANNEL: PostgreSQL delivers it when the transaction commits, and only then, to
every relay LISTENing on any machine. Elsewhere (SQLite: the demo and the tests) a relay
can only run in the committing process, which signals it after the commit.

A relay with nothing to do waits on its `Listener` for up to IDLE_POLL_S, instead of
reading the outbox 20 times a second; a gift then reaches the game a merge window after
its commit, not a poll interval later. It still looks once a poll interval on its own,
in case a notification was lost while its listening connection was being made again.
"""

import logging
import threading

import psycopg
from django.db import connection, connections, transaction

from gifts import writer

logger = logging.getLogger(__name__)

RELAY_CHANNEL = "giftstream_relay"


def relays_wake() -> None:
    """Wake every relay once the transaction under way commits (at once, outside one)."""
    if connection.vendor == "postgresql":
        writer.relays_notify(RELAY_CHANNEL)
    else:
        transaction.on_commit(_local.notify)


class _LocalSignal:
    """Wakes the listeners of this process; each counts what it has seen, so none misses a wake."""

    def __init__(self):
        self._condition = threading.Condition()
        self.generation = 0

    def notify(self) -> None:
        with self._condition:
            self.generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        with self._condition:
            self._condition.wait_for(lambda: self.generation != seen, timeout)
            return self.generation


_local = _LocalSignal()


class Listener:
    """One relay's ear: on PostgreSQL a connection of its own, LISTENing on RELAY_CHANNEL.

    Open it before the relay's first look at the outbox, so that a commit between that look
    and the first wait still wakes it.
    """

    def __init__(self):
        self._connection: psycopg.Connection | None = None
        self._failing = False  # said once per outage, not once per poll
        self._seen = _local.generation
        self._postgresql = connection.vendor == "postgresql"
        if self._postgresql:
            self._connect()

    def wait(self, timeout: float, stop: threading.Event) -> None:
        """Return after a wake or after `timeout` seconds; at once if `stop` is already set.

        A stop during the wait is noticed when it ends: within IDLE_POLL_S of SIGTERM.
        """
        if stop.is_set():
            return
        if not self._postgresql:
            self._seen = _local.wait(self._seen, timeout)
            return
        if self._connection is None and not self._connect():
            stop.wait(timeout)
            return
        try:
            # One wake is enough for one pass; what else arrived meanwhile is read at once.
            for _ in self._connection.notifies(timeout=timeout, stop_after=1):
                pass
            for _ in self._connection.notifies(timeout=0):
                pass
        except psycopg.Error:
            logger.warning("game relay: lost its listening connection; looking every poll interval until it is back")
            self._failing = True
            self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> bool:
        params = connections["default"].get_connection_params()
        try:
            self._connection = psycopg.connect(**params, autocommit=True)
            writer.relays_listen(self._connection, RELAY_CHANNEL)
        except psycopg.Error as error:
            if not self._failing:
                logger.warning("game relay: cannot listen for new gifts (%s); looking every poll interval", error)
            self._failing = True
            self.close()
            return False
        if self._failing:
            logger.info("game relay: listening for new gifts again")
        self._failing = False
        return True
