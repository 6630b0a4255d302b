"""Each server process's room hub: one channel-layer subscription per room, fanned out to local sockets.

A room update costs the channel layer one message per server process, not one per viewer:
the hub reads ONE channel for the whole process, joins a room's group while the process has
viewers in that room, and hands each update to its own sockets, serialized once.

Several processes publish independently, so a room's events can arrive out of order, or not
at all (a Redis hiccup). The hub puts events back in seq order and releases only contiguous
runs. A missing seq is waited for one merge window, then read from the database, where it
already is: events are committed before they are published.

This is where the merge window applies: the first event released in a quiet room arms one
timer of GIFT_MERGE_WINDOW_MS, and when it fires the room's sockets get everything released
meanwhile as ONE `gifts` message, whichever processes committed it.

A room's goal travels with the gifts that moved it (or alone when its host changes it),
each state with a version; the hub keeps the newest it has heard and sends it after the
window's `gifts` message when it changed, so a goal costs no read and at most one message
per window.

A PK battle's rooms are told that it changed (with the gifts that changed it, or in a
`room.pk` message for its other rooms, from whichever process committed it); the hub reads
the battle, with every side's score, at most once a window and
sends it as a `pk` message when it changed. One read serves every room of the battle the
process watches.

After releasing gifts the hub reads the room's live top 10 and sends it as a `leaderboard`
message if it changed, at most once a second per room (the last change always goes out). In
a busy room the board changes nearly every window; sending it that often would double what
every viewer receives for little a person can see. Only processes with viewers in a room
read its board, so a room nobody watches costs no read.
"""

import asyncio
import datetime
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from engagement.selectors import pk_state, room_goal
from gifting_site import metrics
from gifts import broadcast
from gifts.models import Room
from gifts.selectors import REPLAY_LIMIT, room_events_after
from rankings.models import RankingEntry
from rankings.selectors import live_top

logger = logging.getLogger(__name__)

# channels-redis forgets group members after a day (`group_expiry`); rejoin well before that.
GROUP_REFRESH_SECONDS = 3600
RECOVER_DELAY_SECONDS = 1.0
LEADERBOARD_INTERVAL = 1.0  # seconds between two leaderboard messages of one room


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Batch:
    """Contiguous events of one room, oldest first, with their `gifts` message already serialized."""

    room_id: str
    events: list[dict[str, Any]]
    text: str

    @classmethod
    def of(cls, room_id: str, events: list[dict[str, Any]]) -> "Batch":
        return cls(room_id, events, dumps(gifts_message(room_id, events)))

    @property
    def from_seq(self) -> int:
        return self.events[0]["seq"]

    @property
    def to_seq(self) -> int:
        return self.events[-1]["seq"]


def leaderboard_message(room_id: str, seq: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "leaderboard",
        "room_id": room_id,
        "seq": seq,
        "period": RankingEntry.Period.LIVE,
        "entries": entries,
    }


def goal_message(goal: dict[str, Any]) -> dict[str, Any]:
    return {"type": "goal", **goal}


def pk_message(room_id: str, battle: dict[str, Any]) -> dict[str, Any]:
    return {"type": "pk", "room_id": room_id, **battle}


def _seconds_since(at: str) -> float:
    """Seconds from an event's `at` (ISO 8601, Z) to now."""
    committed = datetime.datetime.fromisoformat(at.replace("Z", "+00:00"))
    return max((datetime.datetime.now(datetime.UTC) - committed).total_seconds(), 0.0)


def gifts_message(room_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "gifts",
        "room_id": room_id,
        "from_seq": events[0]["seq"],
        "to_seq": events[-1]["seq"],
        "events": events,
    }


class Socket(Protocol):
    """What the hub needs from a connected viewer: a non-blocking hand-over."""

    def offer_batch(self, batch: Batch) -> None: ...

    def offer_text(self, text: str) -> None: ...


@dataclass(eq=False)
class RoomFeed:
    room_id: str
    sockets: set[Socket] = field(default_factory=set)
    released: int | None = None  # highest seq handed to the sockets; None until the first baseline
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)
    gap_timer: asyncio.TimerHandle | None = None
    filling: bool = False
    outgoing: list[dict[str, Any]] = field(default_factory=list)  # released, waiting for the window
    flush_timer: asyncio.TimerHandle | None = None
    board: list[dict[str, Any]] | None = None  # the top 10 last sent
    board_next: float = 0.0  # loop time before which the next board read waits
    board_scheduled: bool = False
    goal: dict[str, Any] | None = None  # the newest state of the room's goal this process has heard of
    goal_sent: dict[str, Any] | None = None
    pk_id: int | None = None  # the PK battle the room is in, as last announced
    pk_sent: dict[str, Any] | None = None


@dataclass(eq=False)
class BattleRead:
    """When this process next reads a PK battle: once a window, for all its rooms it watches."""

    next: float = 0.0
    scheduled: bool = False


class RoomHub:
    """The registry room -> local sockets of one event loop, and its one channel-layer reader."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.layer = get_channel_layer()
        self.window = settings.GIFT_MERGE_WINDOW_MS / 1000
        self.gap_wait = self.window
        self.channel_name: str | None = None
        self.rooms: dict[str, RoomFeed] = {}
        self.battles: dict[int, BattleRead] = {}
        self.membership = asyncio.Lock()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.reader: asyncio.Task[None] | None = None

    # --- membership -------------------------------------------------------------------------

    async def join(self, room_id: str, socket: Socket) -> None:
        async with self.membership:
            if self.channel_name is None:
                self.channel_name = await self.layer.new_channel(prefix="roomhub.")
                self.reader = self._spawn(self._read())
                self._spawn(self._refresh_groups())
            feed = self.rooms.get(room_id)
            if feed is None:
                feed = self.rooms[room_id] = RoomFeed(room_id)
                # Joined before the socket reads its snapshot, so nothing committed after that
                # read can be missed; anything older that still arrives is dropped by seq.
                await self.layer.group_add(broadcast.room_group(room_id), self.channel_name)
            feed.sockets.add(socket)

    async def leave(self, room_id: str, socket: Socket) -> None:
        async with self.membership:
            feed = self.rooms.get(room_id)
            if feed is None:
                return
            feed.sockets.discard(socket)
            if feed.sockets:
                return
            del self.rooms[room_id]
            for timer in (feed.gap_timer, feed.flush_timer):
                if timer is not None:
                    timer.cancel()
            await self.layer.group_discard(broadcast.room_group(room_id), self.channel_name)

    def baseline(self, room_id: str, seq: int) -> None:
        """A socket has read the room up to `seq` from the database; start the room's stream there."""
        feed = self.rooms.get(room_id)
        if feed is None or feed.released is not None:
            return
        feed.released = seq
        feed.pending = {s: event for s, event in feed.pending.items() if s > seq}
        self._release(feed)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for feed in self.rooms.values():
            for timer in (feed.gap_timer, feed.flush_timer):
                if timer is not None:
                    timer.cancel()
        if self.channel_name is not None:
            for room_id in list(self.rooms):
                await self.layer.group_discard(broadcast.room_group(room_id), self.channel_name)
        self.rooms.clear()

    # --- receiving ----------------------------------------------------------------------------

    async def _read(self) -> None:
        assert self.channel_name is not None
        while True:
            try:
                message = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Whatever was published meanwhile is lost to this process: rejoin and read it back.
                logger.exception("room hub lost its channel layer; recovering from the database")
                await asyncio.sleep(RECOVER_DELAY_SECONDS)
                await self._recover()
                continue
            try:
                self._handle(message)
            except Exception:
                logger.exception("room hub could not handle %r", message.get("type"))

    def _handle(self, message: dict[str, Any]) -> None:
        feed = self.rooms.get(message.get("room_id", ""))
        if feed is None:
            return
        kind = message.get("type")
        if kind == "room.gifts":
            for event in message["events"]:
                if feed.released is None or event["seq"] > feed.released:
                    feed.pending[event["seq"]] = event
            self._release(feed)
            if "goal" in message:
                self._goal_offer(feed, message["goal"])
            if "pk_id" in message:
                feed.pk_id = message["pk_id"]
                self._pk_soon(feed.pk_id, feed)
        elif kind == "room.pk":
            feed.pk_id = message["pk_id"]
            self._pk_soon(feed.pk_id, feed)
        elif kind == "room.game":
            self._send_all(feed, {"type": "game", "room_id": feed.room_id, "game": message["game"]})
        elif kind == "room.delivery":
            self._send_all(feed, {"type": "delivery", "room_id": feed.room_id, "failed": message["failed"]})

    def _send_all(self, feed: RoomFeed, message: dict[str, Any]) -> None:
        text = dumps(message)
        for socket in list(feed.sockets):
            socket.offer_text(text)

    def _release(self, feed: RoomFeed) -> None:
        if feed.released is None:
            return
        run = []
        while (feed.released + 1) in feed.pending:
            feed.released += 1
            run.append(feed.pending.pop(feed.released))
        if run:
            feed.outgoing.extend(run)
            # A battle ended here: its result goes out even if the `room.pk` saying so was lost.
            for event in run:
                if event["kind"] == "pk_end":
                    feed.pk_id = event["pk_id"]
                    self._pk_soon(feed.pk_id, feed)
            if feed.flush_timer is None:
                feed.flush_timer = self.loop.call_later(self.window, self._flush, feed)

        if feed.pending and feed.gap_timer is None and not feed.filling:
            feed.gap_timer = self.loop.call_later(self.gap_wait, self._gap_expired, feed)
        elif not feed.pending and feed.gap_timer is not None:
            feed.gap_timer.cancel()
            feed.gap_timer = None

    def _flush(self, feed: RoomFeed) -> None:
        """The merge window closed: one `gifts` message with everything released in it, then
        the goal if it changed."""
        feed.flush_timer = None
        if feed.outgoing:
            batch = Batch.of(feed.room_id, feed.outgoing)
            feed.outgoing = []
            metrics.MERGE_LAG_SECONDS.observe(_seconds_since(batch.events[0]["at"]))
            for socket in list(feed.sockets):
                socket.offer_batch(batch)
            self._board_soon(feed)
        if feed.goal is not feed.goal_sent and feed.goal is not None:
            feed.goal_sent = feed.goal
            self._send_all(feed, goal_message(feed.goal))

    def _goal_offer(self, feed: RoomFeed, goal: dict[str, Any]) -> None:
        """A state of the room's goal: kept if newer than what this process knows, sent with the window."""
        if not broadcast.goal_newer(goal, feed.goal):
            return
        feed.goal = goal
        if feed.flush_timer is None:
            feed.flush_timer = self.loop.call_later(self.window, self._flush, feed)

    def _board_soon(self, feed: RoomFeed) -> None:
        if feed.board_scheduled:
            return
        feed.board_scheduled = True
        delay = max(0.0, feed.board_next - self.loop.time())
        self.loop.call_later(delay, self._spawn_if_watched, feed, self._board_send)

    async def _board_send(self, feed: RoomFeed) -> None:
        feed.board_scheduled = False
        feed.board_next = self.loop.time() + LEADERBOARD_INTERVAL
        try:
            board = await database_sync_to_async(_live_top)(feed.room_id)
        except Exception:
            logger.exception("room %s: could not read the leaderboard", feed.room_id)
            return
        if board is None or board == feed.board:
            return
        feed.board = board
        text = dumps(leaderboard_message(feed.room_id, feed.released, board))
        for socket in list(feed.sockets):
            socket.offer_text(text)

    def _pk_soon(self, pk_id: int, feed: RoomFeed) -> None:
        """Read the battle and send it to its rooms here if it changed: at most once a window."""
        read = self.battles.setdefault(pk_id, BattleRead())
        if read.scheduled:
            return
        read.scheduled = True
        now = self.loop.time()
        # After the window's `gifts` message when one is due: viewers see a score after its gifts.
        flush_at = feed.flush_timer.when() if feed.flush_timer is not None else now
        delay = max(0.0, read.next - now, flush_at - now)
        self.loop.call_later(delay, lambda: self._spawn(self._pk_send(pk_id, read)))

    async def _pk_send(self, pk_id: int, read: BattleRead) -> None:
        read.scheduled = False
        read.next = self.loop.time() + self.window
        feeds = [feed for feed in self.rooms.values() if feed.pk_id == pk_id]
        if not feeds:
            self.battles.pop(pk_id, None)
            return
        try:
            state = await database_sync_to_async(pk_state)(pk_id)
        except Exception:
            logger.exception("could not read PK battle %s", pk_id)
            return
        if state is None:
            return
        for feed in feeds:
            if state != feed.pk_sent and self.rooms.get(feed.room_id) is feed:
                feed.pk_sent = state
                self._send_all(feed, pk_message(feed.room_id, state))
        if state["state"] in ("ended", "declined") and not read.scheduled:
            self.battles.pop(pk_id, None)

    def _spawn_if_watched(self, feed: RoomFeed, coroutine_function: Any) -> None:
        if self.rooms.get(feed.room_id) is feed:
            self._spawn(coroutine_function(feed))

    def _gap_expired(self, feed: RoomFeed) -> None:
        feed.gap_timer = None
        self._spawn_if_watched(feed, self._fill)

    async def _fill(self, feed: RoomFeed, *, to_latest: bool = False) -> None:
        """Read the missing seqs from the database: once per process, not once per viewer."""
        if feed.filling or feed.released is None:
            return
        feed.filling = True
        try:
            while True:
                target = max(feed.pending, default=feed.released)
                if target <= feed.released and not to_latest:
                    break
                events = await database_sync_to_async(room_events_after)(
                    feed.room_id, since=feed.released, until=None if to_latest else target
                )
                if not events:
                    if target > feed.released:
                        # The database has no such seq (the room was reset): never wait forever.
                        logger.error(
                            "room %s: seqs %s..%s are not in the database", feed.room_id, feed.released + 1, target
                        )
                        feed.released = min(feed.pending, default=target + 1) - 1
                        self._release(feed)
                        continue
                    break
                for event in events:
                    if event["seq"] > feed.released:
                        feed.pending[event["seq"]] = event
                self._release(feed)
                # The lost message may have carried the room's goal too.
                if (goal := await database_sync_to_async(_room_goal)(feed.room_id)) is not None:
                    self._goal_offer(feed, goal)
                if len(events) < REPLAY_LIMIT and not feed.pending:
                    break
        except Exception:
            logger.exception("room %s: could not read missing events", feed.room_id)
        finally:
            feed.filling = False
        self._release(feed)

    async def _recover(self) -> None:
        try:
            self.channel_name = await self.layer.new_channel(prefix="roomhub.")
            for room_id, feed in list(self.rooms.items()):
                await self.layer.group_add(broadcast.room_group(room_id), self.channel_name)
                self._spawn(self._fill(feed, to_latest=True))
        except Exception:
            logger.exception("room hub could not rejoin its rooms")

    async def _refresh_groups(self) -> None:
        while True:
            await asyncio.sleep(GROUP_REFRESH_SECONDS)
            for room_id in list(self.rooms):
                try:
                    await self.layer.group_add(broadcast.room_group(room_id), self.channel_name)
                except Exception:
                    logger.exception("could not refresh room group %s", room_id)

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


def _live_top(room_id: str) -> list[dict[str, Any]] | None:
    room = Room.objects.filter(room_id=room_id).first()
    return None if room is None else live_top(room)


def _room_goal(room_id: str) -> dict[str, Any] | None:
    room = Room.objects.filter(room_id=room_id).first()
    return None if room is None else room_goal(room)


_hub: RoomHub | None = None


def room_hub() -> RoomHub:
    """This event loop's hub (one per server process; tests get a fresh loop, so a fresh hub)."""
    global _hub
    loop = asyncio.get_running_loop()
    broadcast.bind_loop(loop)
    if _hub is None or _hub.loop is not loop:
        _hub = RoomHub(loop)
    return _hub


async def room_hub_close() -> None:
    global _hub
    hub, _hub = _hub, None
    if hub is not None:
        await hub.close()
