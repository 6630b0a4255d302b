"""Ends PK battles on time, in every long-running process, with nothing else to run.

Each web server process (ASGI or WSGI) and each game-relay process starts one daemon thread
at start-up. Every PK_CLOCK_SECONDS it declines the hosts' invites left unanswered past
PK_INVITE_TTL_S, asks the database whether a running battle is due (one indexed statement
each) and ends those that are (engagement.services.pk_battles_end_due). Any
number of processes may do so at once: a battle is claimed with SKIP LOCKED and ended once.
So a battle ends within PK_CLOCK_SECONDS of its `ends_at` even if no one sends or watches,
in the one-process demo as with many servers. Readers of a battle end it themselves when
its time is up (pk_battle_settle), so no one sees it running late.
"""

import logging
import os
import threading
import time

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_started_in: int | None = None  # the process that started the clock: a forked child starts its own


def pk_clock_start() -> None:
    """Start this process's clock, once (PK_CLOCK_SECONDS = 0 turns it off)."""
    global _started_in
    interval = settings.PK_CLOCK_SECONDS
    if interval <= 0:
        return
    with _lock:
        if _started_in == os.getpid():
            return
        _started_in = os.getpid()
    threading.Thread(target=_tick_forever, args=(interval,), name="pk-clock", daemon=True).start()


def _tick_forever(interval: float) -> None:
    from engagement.services import pk_battles_end_due

    while True:
        time.sleep(interval)
        try:
            ended = pk_battles_end_due()
            if ended:
                logger.info("PK clock ended battles %s", ended)
        except Exception:
            logger.exception("PK clock: could not end due battles; trying again")
            # A connection that failed is not reused: the next tick opens a fresh one.
            connection.close()
        else:
            if settings.DATABASE_POOL_SIZE:
                # Back to the pool between ticks, for the requests. Without a pool the thread keeps
                # its one connection: opening one twice a second would cost more.
                connection.close()
