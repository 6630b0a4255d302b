"""After a commit, hand the room's gift events to every server process watching the room.

The publisher lives in every ASGI server process, on that process's event loop.
`transaction.on_commit` runs in the thread that committed (a sync view runs in a worker
thread under ASGI), so the event is handed to the loop with `call_soon_threadsafe`. Events
committed while the loop was busy go out together in one channel-layer message per room on
the loop's next turn, without waiting: the merge window is applied once, where the viewers
are (gifts.roomhub), so a viewer gets one `gifts` message per window however many
processes committed the room's gifts. Nothing runs for a quiet room.

Where no server loop runs (a WSGI worker, a management command, the admin under WSGI), the
process starts one publishing thread of its own, with its own loop, the first time it
commits a gift, and publishes the same way: no event loop is made per request, and gifts
committed together still travel together. `flush()` waits until all of it has gone out; it
runs when such a process exits. Receivers order and de-duplicate by seq either way (see
gifts.roomhub).
"""

import asyncio
import atexit
import contextvars
import hashlib
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import BaseChannelLayer, channel_layers, get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

# Channel-layer group names allow only these characters and must stay under 100 of them.
_GROUP_SAFE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def room_group(room_id: str) -> str:
    if _GROUP_SAFE.fullmatch(room_id):
        return f"room.{room_id}"
    return "roomx." + hashlib.sha256(room_id.encode()).hexdigest()[:48]


def gift_events_committed(
    room_id: str, payloads: list[dict[str, Any]], goal: dict[str, Any] | None = None, pk_id: int | None = None
) -> None:
    """Publish a room's committed gift events to its watchers, with others committed meanwhile,
    and the room goal and PK battle they moved."""
    _hand_to_publisher(lambda publisher: publisher.add(room_id, payloads, goal, pk_id))


def goal_changed(room_id: str, goal: dict[str, Any]) -> None:
    """The host set or changed the room's goal: it goes out with the room's next window."""
    _hand_to_publisher(lambda publisher: publisher.add(room_id, [], goal))


def pk_changed(pk_id: int, room_ids: list[str]) -> None:
    """A PK battle's scores or state changed: these rooms of it are told, at most once a window.

    The rooms whose own gifts moved it are told with those gifts (`gift_events_committed`):
    a battle's busiest rooms cost no message of their own.
    """
    _hand_to_publisher(lambda publisher: publisher.pk_touch(pk_id, room_ids))


def goal_newer(goal: dict[str, Any], than: dict[str, Any] | None) -> bool:
    """Whether this state of a room's goal is newer than `than`: a later goal, or a later version of it."""
    return than is None or (goal["goal_id"], goal["version"]) > (than["goal_id"], than["version"])


def game_state_changed(room_id: str, payload: dict[str, Any] | None) -> None:
    """A room's game session opened, started or ended: not merged, it is rare and must be prompt."""
    message = {"type": "room.game", "room_id": room_id, "game": payload}
    _hand_to_publisher(lambda publisher: publisher.publish_soon(room_id, message))


def game_deliveries_failed(room_id: str, failed: list[dict[str, Any]]) -> None:
    """Gifts of the room the game would not take, [{seq, code, message}]: one message per relay call."""
    message = {"type": "room.delivery", "room_id": room_id, "failed": failed}
    _hand_to_publisher(lambda publisher: publisher.publish_soon(room_id, message))


# --- the per-process publisher ------------------------------------------------------------------


class RoomPublisher:
    """Events per room waiting for the loop's next turn. Used only on its loop's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, layer: BaseChannelLayer | None = None):
        self.loop = loop
        # None: the process's shared channel layer (a server process's consumers listen on it).
        self.layer = layer
        self.thread_id = threading.get_ident()
        self.pending: dict[str, list[dict[str, Any]]] = {}
        self.goals: dict[str, dict[str, Any]] = {}  # the newest goal state per room, waiting with its events
        self.pks: dict[str, set[int]] = {}  # PK battles changed per room, waiting for the window's end
        self.pk_moved: dict[str, int] = {}  # the PK battle a room's waiting gifts moved
        self.tasks: set[asyncio.Task[None]] = set()

    def add(
        self,
        room_id: str,
        payloads: list[dict[str, Any]],
        goal: dict[str, Any] | None = None,
        pk_id: int | None = None,
    ) -> None:
        if goal is not None and goal_newer(goal, self.goals.get(room_id)):
            self.goals[room_id] = goal
        if pk_id is not None:
            self.pk_moved[room_id] = pk_id
        queued = self.pending.get(room_id)
        if queued is not None:
            queued.extend(payloads)
            return
        self.pending[room_id] = list(payloads)
        # Not a timer: whatever else commits before the loop comes round joins this message.
        self.loop.call_soon(self._flush, room_id)

    def pk_touch(self, pk_id: int, room_ids: list[str]) -> None:
        for room_id in room_ids:
            touched = self.pks.get(room_id)
            if touched is None:
                touched = self.pks[room_id] = set()
                # A window's changes in one message: the watchers read the battle once a window anyway.
                self.loop.call_later(settings.GIFT_MERGE_WINDOW_MS / 1000, self._pk_flush, room_id)
            touched.add(pk_id)

    def _pk_flush(self, room_id: str) -> None:
        for pk_id in sorted(self.pks.pop(room_id, ())):
            self._spawn(self._publish, room_id, {"type": "room.pk", "room_id": room_id, "pk_id": pk_id})

    def publish_soon(self, room_id: str, message: dict[str, Any]) -> None:
        self._spawn(self._publish, room_id, message)

    def _flush(self, room_id: str) -> None:
        events = self.pending.pop(room_id, [])
        goal = self.goals.pop(room_id, None)
        pk_id = self.pk_moved.pop(room_id, None)
        if events or goal:
            events.sort(key=lambda event: event["seq"])
            message = {"type": "room.gifts", "room_id": room_id, "events": events}
            if goal is not None:
                message["goal"] = goal
            if pk_id is not None:
                message["pk_id"] = pk_id
            self._spawn(self._publish, room_id, message)

    async def drain(self) -> None:
        """Publish everything pending now and wait for every publish under way."""
        for room_id in list(self.pending):
            self._flush(room_id)
        for room_id in list(self.pks):
            self._pk_flush(room_id)
        while unfinished := [task for task in self.tasks if not task.done()]:
            await asyncio.gather(*unfinished, return_exceptions=True)

    def _spawn(self, func: Callable[..., Awaitable[None]], *args: Any) -> None:
        task = self.loop.create_task(func(*args))
        self.tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self.tasks.discard)

    async def _publish(self, room_id: str, message: dict[str, Any]) -> None:
        try:
            await (self.layer or get_channel_layer()).group_send(room_group(room_id), message)
        except Exception:
            # The receiving hubs notice the gap and read the missing events from the database.
            logger.exception("could not publish %s to room %s", message["type"], room_id)


_publisher: RoomPublisher | None = None


def bind_loop(loop: asyncio.AbstractEventLoop) -> RoomPublisher:
    """Publish from this event loop from now on (called from the loop, once per connection: cheap)."""
    global _publisher
    publisher = _publisher
    if publisher is None or publisher.loop is not loop:
        publisher = _publisher = RoomPublisher(loop)
    return publisher


def bound_to_server_loop(app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Wrap the ASGI application so the publisher knows the server's loop before the first commit."""

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        bind_loop(asyncio.get_running_loop())
        await app(scope, receive, send)

    return application


def _hand_to_publisher(call: Callable[[RoomPublisher], None]) -> None:
    publisher = _publisher
    if publisher is None or not publisher.loop.is_running():
        publisher = _own_publisher()
    if threading.get_ident() == publisher.thread_id:
        call(publisher)
        return
    try:
        # A fresh context: the committing thread's one marks it as asgiref's sync thread, and a
        # task inheriting that mark could not use database_sync_to_async without a deadlock error.
        publisher.loop.call_soon_threadsafe(call, publisher, context=contextvars.Context())
    except RuntimeError:  # the server's loop closed between the check and the call
        own = _own_publisher()
        own.loop.call_soon_threadsafe(call, own, context=contextvars.Context())


# --- where no server loop runs: the process's own publishing thread -----------------------------

_own_lock = threading.Lock()
_own: tuple[int, RoomPublisher] | None = None  # (pid, publisher): a forked child starts its own


def _own_publisher() -> RoomPublisher:
    global _own
    with _own_lock:
        if _own is None or _own[0] != os.getpid():
            started = threading.Event()
            holder: list[RoomPublisher] = []

            def run() -> None:
                loop = asyncio.new_event_loop()
                # A layer of its own: channels_redis keeps connections per loop in one object, and
                # this loop's must not be touched from another. (An in-memory layer reaches only
                # consumers in this process, and where there are any a server loop publishes.)
                layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
                holder.append(RoomPublisher(loop, layer))  # made on its loop's thread, as RoomPublisher requires
                loop.call_soon(started.set)
                loop.run_forever()

            threading.Thread(target=run, name="gift-publisher", daemon=True).start()
            started.wait()
            if _own is None:
                atexit.register(flush)
            _own = (os.getpid(), holder[0])
        return _own[1]


def flush(timeout: float = 5.0) -> None:
    """Wait until what this process handed to its own publishing thread has been published."""
    own = _own
    if own is None or own[0] != os.getpid():
        return
    publisher = own[1]
    try:
        asyncio.run_coroutine_threadsafe(publisher.drain(), publisher.loop).result(timeout)
    except Exception:
        logger.warning("gift broadcasts still pending after %.0f s were not published", timeout)
