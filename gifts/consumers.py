"""The room websocket (SPEC section 6): membership and relaying only.

Each socket keeps the last seq it delivered and one ordered outbox worked by its own writer
task, so a slow viewer never holds up the room hub or the other viewers. Before a batch goes
out, the writer compares seqs: an old batch is dropped, an overlapping one trimmed, and a gap
(a late joiner, an overflowed outbox) is filled from the database first. A viewer therefore
never sees a gap or a repeat, except when it asks for a replay itself.
"""

import asyncio
import json
import logging
import re
from collections import deque
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth import get_user_model
from django.core.cache import cache

from engagement.selectors import room_goal, room_pk
from gifting_site import metrics
from gifting_site.converters import PublicIdConverter
from gifting_site.errors import MalformedRequest
from gifts.api import ws_ticket_key
from gifts.models import Room
from gifts.roomhub import Batch, RoomHub, dumps, gifts_message, goal_message, leaderboard_message, pk_message, room_hub
from gifts.selectors import (
    REPLAY_LIMIT,
    events_after,
    game_state_payload,
    recent_events,
    room_events_after,
    room_game_session,
)
from rankings.selectors import live_top

logger = logging.getLogger(__name__)

# Close codes, all in the application's own range 4000-4999: Daphne refuses to send any
# other but 1000 (it closes with 1011 instead), so the protocol's 1008 and 1009 are 4008
# and 4009 here, the same under every ASGI server.
CLOSE_BAD_REQUEST = 4400
CLOSE_BAD_TICKET = 4401
CLOSE_ROOM_NOT_FOUND = 4404
CLOSE_TOO_MANY_MESSAGES = 4008
CLOSE_TOO_BIG = 4009

# A client sends a ping now and then and a resync after a gap: a short burst is plenty.
# Beyond it the client is flooding, and the socket is closed rather than answered.
INBOUND_BURST = 20
INBOUND_PER_SECOND = 5.0

# Client messages are tiny JSON objects; anything bigger is not a client of ours.
MAX_CLIENT_FRAME = 4096
# Updates waiting for a slow viewer. Beyond this it gets a fresh snapshot instead of the backlog.
OUTBOX_LIMIT = 200


class RoomConsumer(AsyncWebsocketConsumer):
    # No channel per socket: the process's room hub receives the room's updates for every socket.
    channel_layer_alias = "room-sockets-use-the-room-hub"

    room_id: str
    user_id: int | None = None
    hub: RoomHub | None = None
    writer: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.room_id = self.scope["url_route"]["kwargs"]["room_id"]
        self.last_seq = 0
        self.outbox: deque[tuple[str, Any]] = deque()
        self.wakeup = asyncio.Event()
        self.inbound_allowance = float(INBOUND_BURST)
        self.inbound_checked = asyncio.get_running_loop().time()
        # Accept first: a refusal with its own close code needs an open socket to carry it.
        await self.accept()

        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        since_text = query.get("since", [None])[-1]
        since = None
        if since_text is not None:
            if not since_text.isdigit() or len(since_text) > 18:
                await self._refuse(CLOSE_BAD_REQUEST, "since must be a non-negative integer")
                return
            since = int(since_text)

        ticket = query.get("ticket", [None])[-1]
        if ticket is not None:
            self.user_id = await _ticket_redeem(ticket)
            if self.user_id is None:
                await self._refuse(CLOSE_BAD_TICKET, "ticket is invalid, expired or already used")
                return
        else:
            user = self.scope.get("user")
            self.user_id = user.pk if user is not None and user.is_authenticated else None

        if not await _room_exists(self.room_id):
            await self._refuse(CLOSE_ROOM_NOT_FOUND, f"room {self.room_id} not found")
            return

        self.hub = room_hub()
        await self.hub.join(self.room_id, self)
        metrics.WEBSOCKETS.inc()
        self.outbox.appendleft(("open", since))
        self.writer = asyncio.get_running_loop().create_task(self._write())

    async def disconnect(self, code: int) -> None:
        if self.writer is not None:
            self.writer.cancel()
        if self.hub is not None:
            metrics.WEBSOCKETS.dec()
            await self.hub.leave(self.room_id, self)

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        metrics.WEBSOCKET_MESSAGES.inc()
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self._inbound_allowed():
            logger.info("room %s: closing a socket that sent messages too fast", self.room_id)
            await self.close(code=CLOSE_TOO_MANY_MESSAGES)
            return
        if text_data is None:
            await self._error("messages must be JSON text")
            return
        if len(text_data) > MAX_CLIENT_FRAME:
            await self.close(code=CLOSE_TOO_BIG)
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            await self._error("message is not valid JSON")
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            await self.send(text_data=dumps({"type": "pong"}))
        elif kind == "resync":
            since = message.get("since")
            if type(since) is not int or since < 0:
                await self._error("resync needs since: a non-negative integer")
                return
            self._offer(("resync", since))
        else:
            await self._error('unknown message type; expected "ping" or "resync"')

    def _inbound_allowed(self) -> bool:
        """A token bucket: INBOUND_BURST messages at once, then INBOUND_PER_SECOND."""
        now = asyncio.get_running_loop().time()
        elapsed, self.inbound_checked = now - self.inbound_checked, now
        self.inbound_allowance = min(INBOUND_BURST, self.inbound_allowance + elapsed * INBOUND_PER_SECOND)
        if self.inbound_allowance < 1:
            return False
        self.inbound_allowance -= 1
        return True

    # --- hand-over from the room hub (called on the loop, never blocks) --------------------------

    def offer_batch(self, batch: Batch) -> None:
        self._offer(("batch", batch))

    def offer_text(self, text: str) -> None:
        self._offer(("text", text))

    def _offer(self, item: tuple[str, Any]) -> None:
        if len(self.outbox) >= OUTBOX_LIMIT:
            # Too far behind to catch up frame by frame: drop the backlog and send the room as
            # it is now. Client requests in the backlog are kept.
            kept = [entry for entry in self.outbox if entry[0] in ("open", "resync")]
            self.outbox.clear()
            self.outbox.extend(kept)
            self.outbox.append(("snapshot", None))
        if item[0] in ("batch", "text") and self.outbox and self.outbox[-1][0] == "snapshot":
            return  # the snapshot about to be sent already includes it
        self.outbox.append(item)
        self.wakeup.set()

    # --- the writer ---------------------------------------------------------------------------------

    async def _write(self) -> None:
        try:
            while True:
                while not self.outbox:
                    self.wakeup.clear()
                    await self.wakeup.wait()
                kind, value = self.outbox.popleft()
                if kind == "batch":
                    await self._deliver(value)
                elif kind == "text":
                    await self.send(text_data=value)
                elif kind == "open":
                    await self._open(value)
                elif kind == "resync":
                    await self._replay(value)
                elif kind == "snapshot":
                    await self._snapshot()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("room %s: socket writer failed", self.room_id)
            await self.close(code=1011)

    async def _open(self, since: int | None) -> None:
        if since is None:
            await self._snapshot()
        else:
            await self._replay(since, resume=True)
        assert self.hub is not None
        self.hub.baseline(self.room_id, self.last_seq)

    async def _deliver(self, batch: Batch) -> None:
        if batch.to_seq <= self.last_seq:
            return
        if batch.from_seq > self.last_seq + 1:
            await self._fill_to(batch.from_seq - 1)
            if batch.to_seq <= self.last_seq:
                return
        if batch.from_seq == self.last_seq + 1:
            await self.send(text_data=batch.text)
        else:
            events = [event for event in batch.events if event["seq"] > self.last_seq]
            await self.send(text_data=dumps(gifts_message(self.room_id, events)))
        self.last_seq = batch.to_seq

    async def _fill_to(self, until: int) -> None:
        """Send the seqs between what this viewer has and `until` from the database."""
        if until - self.last_seq > REPLAY_LIMIT:
            await self._snapshot()
            return
        events = await database_sync_to_async(room_events_after)(self.room_id, since=self.last_seq, until=until)
        if events and events[0]["seq"] == self.last_seq + 1:
            await self.send(text_data=dumps(gifts_message(self.room_id, events)))
            self.last_seq = events[-1]["seq"]
        if self.last_seq < until:
            await self._snapshot()  # the database cannot close the gap: start the viewer afresh

    async def _snapshot(self) -> None:
        snapshot = await database_sync_to_async(room_snapshot)(self.room_id)
        if snapshot is None:
            await self._refuse(CLOSE_ROOM_NOT_FOUND, f"room {self.room_id} not found")
            return
        await self.send(text_data=dumps(snapshot))
        self.last_seq = snapshot["seq"]

    async def _replay(self, since: int, *, resume: bool = False) -> None:
        """Events after `since`, oldest first; a snapshot if `since` is older than a replay reaches."""
        replay = await database_sync_to_async(room_replay)(self.room_id, since)
        if replay is None:
            await self._snapshot()
            return
        if replay["events"]:
            await self.send(text_data=dumps(gifts_message(self.room_id, replay["events"])))
        self.last_seq = replay["seq"]
        if resume:
            # A returning viewer also needs what changed besides gifts while it was away.
            await self.send(text_data=dumps(replay["leaderboard"]))
            await self.send(text_data=dumps(replay["game"]))
            if replay["goal"] is not None:
                await self.send(text_data=dumps(goal_message(replay["goal"])))
            if replay["pk"] is not None:
                await self.send(text_data=dumps(pk_message(self.room_id, replay["pk"])))

    async def _error(self, message: str) -> None:
        await self.send(text_data=dumps({"type": "error", "code": MalformedRequest.code, "message": message}))

    async def _refuse(self, code: int, reason: str) -> None:
        await self.send(text_data=dumps({"type": "error", "code": code, "message": reason}))
        await self.close(code=code, reason=reason)


# --- reads (run in a worker thread) ---------------------------------------------------------------


_PUBLIC_ID = re.compile(PublicIdConverter.regex)


@database_sync_to_async
def _room_exists(room_id: str) -> bool:
    # An id no URL of ours could carry (a NUL, say) names no room, and the database refuses it.
    return bool(_PUBLIC_ID.fullmatch(room_id)) and Room.objects.filter(room_id=room_id).exists()


@database_sync_to_async
def _ticket_redeem(ticket: str) -> int | None:
    """The user a ticket names, once: whoever deletes the key first owns the ticket."""
    if not ticket or len(ticket) > 128:
        return None
    key = ws_ticket_key(ticket)
    user_pk = cache.get(key)
    if user_pk is None or not cache.delete(key):
        return None
    return user_pk if get_user_model().objects.filter(pk=user_pk, is_active=True).exists() else None


def room_snapshot(room_id: str) -> dict[str, Any] | None:
    room = Room.objects.select_related("host").filter(room_id=room_id).first()
    if room is None:
        return None
    recent = recent_events(room)
    # A gift may commit between the two reads; the snapshot then covers it, and its broadcast
    # is dropped as a repeat.
    seq = max(room.last_seq, recent[-1]["seq"] if recent else 0)
    return {
        "type": "snapshot",
        "room_id": room.room_id,
        "seq": seq,
        "live": room.is_live,
        "game": game_state_payload(room_game_session(room)),
        "leaderboard": live_top(room),
        "goal": room_goal(room),
        "pk": room_pk(room),
        "recent": recent,
    }


def room_replay(room_id: str, since: int) -> dict[str, Any] | None:
    room = Room.objects.filter(room_id=room_id).first()
    if room is None or since > room.last_seq or room.last_seq - since > REPLAY_LIMIT:
        return None
    events = events_after(room, since=since)
    seq = events[-1]["seq"] if events else since
    return {
        "events": events,
        "seq": seq,
        "leaderboard": leaderboard_message(room.room_id, seq, live_top(room)),
        "game": {"type": "game", "room_id": room.room_id, "game": game_state_payload(room_game_session(room))},
        "goal": room_goal(room),
        "pk": room_pk(room),
    }
