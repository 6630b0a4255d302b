"""The reference for the fan-out benchmark: a bare `websockets` server that merges and broadcasts.

    python bench/ws_reference.py PORT [--window-ms 100] [--compression deflate|none]

It does what the room websocket does on its fast path and nothing else: no database, no channel
layer, no per-socket outbox. A publisher connects to `/publish/<room>` and sends one JSON gift
event per message; the server numbers it (the room's next `seq`), stamps `at` (UTC ISO time, as
Giftstream stamps the event row) and answers `{"msg_id", "seq", "at"}`. A room's first pending
event arms one timer; when the merge window ends, the room's events go out as ONE `gifts`
message (same shape as Giftstream's), serialized once and written to every viewer with
`websockets.broadcast`. A viewer connects to `/ws/rooms/<room>/` and first gets a `snapshot`
carrying the last broadcast seq, so viewers count seqs exactly as they do against Giftstream.

The process exits when its standard input closes, so it never outlives the benchmark runner.
"""

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


class Room:
    def __init__(self, room_id: str):
        self.room_id = room_id
        self.viewers: set[ServerConnection] = set()
        self.last_seq = 0  # numbered so far
        self.released = 0  # broadcast so far: what a new viewer's snapshot covers
        self.pending: list[dict[str, Any]] = []


class ReferenceServer:
    def __init__(self, window_seconds: float):
        self.window = window_seconds
        self.rooms: dict[str, Room] = {}

    def room(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = Room(room_id)
        return room

    async def handle(self, connection: ServerConnection) -> None:
        path = connection.request.path.split("?", 1)[0].strip("/")
        parts = path.split("/")
        if len(parts) == 2 and parts[0] == "publish":
            await self.publish(connection, self.room(parts[1]))
        elif len(parts) == 3 and parts[:2] == ["ws", "rooms"]:
            await self.watch(connection, self.room(parts[2]))
        else:
            await connection.close(code=4404, reason="unknown path")

    async def watch(self, connection: ServerConnection, room: Room) -> None:
        # Written synchronously and joined in the same step, so no merged batch can slip between
        # the snapshot and the viewer's first `gifts` message (no gap, no repeat).
        snapshot = {"type": "snapshot", "room_id": room.room_id, "seq": room.released, "recent": []}
        broadcast([connection], dumps(snapshot))
        room.viewers.add(connection)
        try:
            await connection.wait_closed()
        finally:
            room.viewers.discard(connection)

    async def publish(self, connection: ServerConnection, room: Room) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for text in connection:
                event = json.loads(text)
                room.last_seq += 1
                event["seq"] = room.last_seq
                event["at"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                if not room.pending:
                    loop.call_later(self.window, self.flush, room)
                room.pending.append(event)
                await connection.send(dumps({"msg_id": event.get("msg_id"), "seq": event["seq"], "at": event["at"]}))
        except ConnectionClosed:
            pass

    def flush(self, room: Room) -> None:
        events, room.pending = room.pending, []
        if not events:
            return
        message = {
            "type": "gifts",
            "room_id": room.room_id,
            "from_seq": events[0]["seq"],
            "to_seq": events[-1]["seq"],
            "events": events,
        }
        broadcast(room.viewers, dumps(message))
        room.released = events[-1]["seq"]


async def stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def main(port: int, window_ms: int, compression: str | None) -> None:
    server = ReferenceServer(window_ms / 1000)
    async with serve(
        server.handle,
        "127.0.0.1",
        port,
        compression=compression,
        max_size=2**20,
        # Many viewers handshake at once at the start of a run.
        backlog=4096,
        open_timeout=60,
    ):
        print("ready", flush=True)
        await stdin_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--window-ms", type=int, default=100)
    parser.add_argument("--compression", choices=["deflate", "none"], default="deflate")
    arguments = parser.parse_args()
    compression = None if arguments.compression == "none" else arguments.compression
    asyncio.run(main(arguments.port, arguments.window_ms, compression))
