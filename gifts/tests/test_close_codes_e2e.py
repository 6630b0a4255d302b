"""Every close code the README lists, as a real client receives it from each ASGI server the project ships."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gifts.consumers import INBOUND_BURST
from gifts.tests.servers import UVICORN, ServerProcess, seed, server_database, server_env

DAPHNE = (sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "gifting_site.asgi:application")
ROOM = "close-codes"


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def server(request, tmp_path_factory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp(f"close-codes-{request.param}")
    command = UVICORN if request.param == "uvicorn" else DAPHNE
    with server_database(workdir) as database_url:
        env = server_env(
            database_url=database_url, redis_url=settings.REDIS_URL, channel_prefix=f"cc{uuid.uuid4().hex[:12]}"
        )
        seed(env, rooms=[ROOM], senders=1, coins=10)
        process = ServerProcess(env=env, log=workdir / "server.log", command=command).start()
        try:
            yield process
        finally:
            process.stop()


async def close_code(server: ServerProcess, path: str, *, send: list[str] = ()) -> int:
    """Open the socket, send these frames (answers ignored), and return the code it was closed with."""
    async with connect(f"{server.ws}{path}", origin=server.http, proxy=None, open_timeout=20) as socket:
        try:
            for frame in send:
                await socket.send(frame)
            while True:
                await socket.recv()
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame"
            return closed.rcvd.code
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("path", "frames", "code"),
    [
        ("/ws/rooms/no-such-room/", [], 4404),
        (f"/ws/rooms/{ROOM}/?since=minus-one", [], 4400),
        (f"/ws/rooms/{ROOM}/?ticket=forged", [], 4401),
        (f"/ws/rooms/{ROOM}/", [json.dumps({"type": "ping", "pad": "x" * 10_000})], 4009),
        (f"/ws/rooms/{ROOM}/", [json.dumps({"type": "ping"})] * (INBOUND_BURST + 5), 4008),
    ],
    ids=["unknown room", "bad since", "bad ticket", "frame too big", "too many messages"],
)
async def test_each_documented_close_code_reaches_the_client(server, path, frames, code):
    assert await close_code(server, path, send=frames) == code
