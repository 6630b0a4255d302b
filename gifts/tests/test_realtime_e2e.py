"""Realtime rooms end to end: real uvicorn processes, a real websocket client, gifts sent over HTTP.

What a viewer of a live room would notice: every gift arrives, in seq order, once; a viewer
who drops off and comes back with `?since=` misses nothing; with PostgreSQL and Redis, a
viewer on one server process sees the gifts committed by another.

The servers use a database of their own (see gifts.tests.servers), so this module needs no
test database of its own: it never touches the ORM in the test process.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from gifts.tests.servers import GIFT_ID, GUNICORN, UVICORN, ServerProcess, seed, server_database, server_env

ROOMS = ["e2e-live", "e2e-reconnect", "e2e-through-b", "e2e-mixed", "e2e-origin", "e2e-through-wsgi"]
SENDERS = 4
RECEIVE_TIMEOUT = 20.0


def scale_out_skip_reason() -> str | None:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return "two server processes need a shared PostgreSQL database: DATABASE_URL is not PostgreSQL"
    if not settings.REDIS_URL:
        return "two server processes need Redis for their channel layer: REDIS_URL is unset"
    return None


needs_scale_out = pytest.mark.skipif(scale_out_skip_reason() is not None, reason=scale_out_skip_reason() or "")


# --- fixtures: the servers' database, seed data and processes ---------------------------------------


@dataclass
class Deployment:
    env: dict[str, str]
    tokens: list[str]
    workdir: Any
    servers: list[ServerProcess] = field(default_factory=list)

    def server(self, name: str, command: tuple[str, ...] = UVICORN) -> ServerProcess:
        server = ServerProcess(env=self.env, log=self.workdir / f"{name}.log", command=command).start()
        self.servers.append(server)
        return server


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("realtime-e2e")
    # Runs sharing one Redis keep their rooms apart by channel-layer prefix.
    prefix = f"e2e{uuid.uuid4().hex[:12]}"
    with server_database(workdir) as database_url:
        env = server_env(database_url=database_url, redis_url=settings.REDIS_URL, channel_prefix=prefix)
        seeded = seed(env, rooms=ROOMS, senders=SENDERS, coins=1_000_000)
        deployment = Deployment(env=env, tokens=[sender["token"] for sender in seeded["senders"]], workdir=workdir)
        try:
            yield deployment
        finally:
            for server in deployment.servers:
                server.stop()
            _redis_forget(prefix)


def _redis_forget(prefix: str) -> None:
    if not settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module")
def server_a(deployment) -> ServerProcess:
    return deployment.server("server-a")


@pytest.fixture(scope="module")
def server_b(deployment) -> ServerProcess:
    return deployment.server("server-b")


@pytest.fixture(scope="module")
def wsgi_server(deployment) -> ServerProcess:
    """The REST and server APIs on gunicorn, as the production layout serves them."""
    return deployment.server("wsgi", GUNICORN)


# --- a viewer and a sender, as the apps would be -------------------------------------------------


class Viewer:
    """A websocket viewer that holds every gifts message to the guarantee: contiguous seqs, no repeat."""

    def __init__(self, server: ServerProcess, socket: ClientConnection, last_seq: int):
        self.server = server
        self.socket = socket
        self.last_seq = last_seq
        self.events: list[dict] = []
        self.messages: list[dict] = []

    @classmethod
    async def open(cls, server: ServerProcess, room_id: str, *, since: int | None = None) -> Viewer:
        query = "" if since is None else f"?since={since}"
        socket = await connect(
            f"{server.ws}/ws/rooms/{room_id}/{query}", origin=server.http, proxy=None, open_timeout=RECEIVE_TIMEOUT
        )
        if since is not None:
            return cls(server, socket, since)
        snapshot = json.loads(await asyncio.wait_for(socket.recv(), RECEIVE_TIMEOUT))
        assert snapshot["type"] == "snapshot", snapshot
        assert snapshot["room_id"] == room_id
        viewer = cls(server, socket, snapshot["seq"])
        viewer.messages.append(snapshot)
        return viewer

    async def receive_through(self, seq: int) -> None:
        """Read until the viewer has every event up to `seq`; fails at the first gap, repeat or snapshot."""
        deadline = time.monotonic() + RECEIVE_TIMEOUT
        while self.last_seq < seq:
            try:
                message = json.loads(await asyncio.wait_for(self.socket.recv(), deadline - time.monotonic()))
            except TimeoutError:
                raise AssertionError(
                    f"viewer stopped at seq {self.last_seq}, waiting for {seq}; server log:\n{self.server.log_tail()}"
                ) from None
            self.messages.append(message)
            # A snapshot mid-stream would mean the server gave up on the stream: a viewer would lose events.
            assert message["type"] != "snapshot", f"unexpected snapshot after seq {self.last_seq}"
            if message["type"] != "gifts":
                continue
            seqs = [event["seq"] for event in message["events"]]
            assert message["from_seq"] == self.last_seq + 1, f"after seq {self.last_seq} came {seqs}"
            assert seqs == list(range(message["from_seq"], message["to_seq"] + 1)), seqs
            self.events.extend(message["events"])
            self.last_seq = message["to_seq"]

    @property
    def seqs(self) -> list[int]:
        return [event["seq"] for event in self.events]

    async def close(self) -> None:
        await self.socket.close()


class Sender:
    """One signed-in viewer sending gifts over the REST API (token auth, as a mobile app does)."""

    _msg_ids = itertools.count(1)
    _lock = threading.Lock()

    def __init__(self, token: str):
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only, whatever proxy the environment names
        self.session.headers["Authorization"] = f"Token {token}"

    def send(self, server: ServerProcess, room_id: str) -> dict:
        with Sender._lock:
            msg_id = f"e2e-{next(Sender._msg_ids)}"
        response = self.session.post(
            f"{server.http}/api/rooms/{room_id}/gifts/", json={"gift_id": GIFT_ID, "msg_id": msg_id}, timeout=30
        )
        assert response.status_code == 201, (response.status_code, response.text)
        return response.json()["event"]

    def send_many(self, server: ServerProcess, room_id: str, count: int, sent: list[dict] | None = None) -> list[dict]:
        sent = [] if sent is None else sent
        for _ in range(count):
            sent.append(self.send(server, room_id))  # list.append is atomic: a reader may watch progress
        return sent

    def close(self) -> None:
        self.session.close()


@pytest.fixture
def senders(deployment) -> Iterator[list[Sender]]:
    people = [Sender(token) for token in deployment.tokens]
    yield people
    for person in people:
        person.close()


def by_seq(events: list[dict]) -> dict[int, dict]:
    return {event["seq"]: event for event in events}


# --- one server -------------------------------------------------------------------------------------


async def test_gifts_sent_over_http_reach_the_viewer_in_order_once(server_a, senders):
    # given a viewer watching an empty live room
    room_id = "e2e-live"
    viewer = await Viewer.open(server_a, room_id)
    assert viewer.last_seq == 0
    try:
        # when four people send 60 gifts at once through the REST API
        with ThreadPoolExecutor(len(senders)) as pool:
            batches = await asyncio.gather(
                *(asyncio.wrap_future(pool.submit(sender.send_many, server_a, room_id, 15)) for sender in senders)
            )
        answered = [event for batch in batches for event in batch]
        await viewer.receive_through(60)

        # then the viewer got seqs 1..60, each once and in order, in `gifts` messages
        assert viewer.seqs == list(range(1, 61))
        # and each is the very event its sender was answered with
        assert by_seq(viewer.events) == by_seq(answered)
    finally:
        await viewer.close()


async def test_viewer_reconnecting_with_since_gets_every_event_once(server_a, senders):
    # given a viewer of an empty room while one person sends 100 gifts, one after another
    room_id, total = "e2e-reconnect", 100
    first = await Viewer.open(server_a, room_id)
    sent: list[dict] = []
    sending = asyncio.create_task(asyncio.to_thread(senders[0].send_many, server_a, room_id, total, sent))
    try:
        await first.receive_through(10)
    finally:
        # when the viewer drops off ...
        await first.close()
    # ... while more gifts are sent, and comes back with the last seq it saw
    while len(sent) < min(first.last_seq + 40, total) and not sending.done():
        await asyncio.sleep(0.05)
    second = await Viewer.open(server_a, room_id, since=first.last_seq)
    try:
        answered = await sending
        await second.receive_through(total)
    finally:
        await second.close()

    # then across both connections it saw seqs 1..100, each exactly once and in order
    assert first.seqs + second.seqs == list(range(1, total + 1))
    assert by_seq(first.events + second.events) == by_seq(answered)
    # and the returning viewer was brought up to date without a snapshot
    assert "snapshot" not in [message["type"] for message in second.messages]


async def test_websocket_from_a_foreign_origin_is_refused(server_a):
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"{server_a.ws}/ws/rooms/e2e-origin/", origin="https://evil.example", proxy=None)
    assert refused.value.response.status_code == 403


# --- two servers sharing PostgreSQL and Redis ------------------------------------------------------------


@needs_scale_out
async def test_viewer_on_one_server_receives_gifts_sent_through_another(server_a, server_b, senders):
    # given a viewer connected to server A
    room_id = "e2e-through-b"
    viewer = await Viewer.open(server_a, room_id)
    try:
        # when 60 gifts are sent through server B
        answered = await asyncio.to_thread(senders[0].send_many, server_b, room_id, 60)
        await viewer.receive_through(60)
        # then the viewer on A got all of them, in order, once
        assert viewer.seqs == list(range(1, 61))
        assert by_seq(viewer.events) == by_seq(answered)
    finally:
        await viewer.close()


@needs_scale_out
async def test_concurrent_gifts_through_both_servers_reach_viewers_on_both_once(server_a, server_b, senders):
    # given one viewer on each server, watching the same room
    room_id, each = "e2e-mixed", 25
    on_a = await Viewer.open(server_a, room_id)
    on_b = await Viewer.open(server_b, room_id)
    try:
        # when four people send at once, two through server A and two through server B
        routes = [server_a, server_b, server_a, server_b]
        with ThreadPoolExecutor(len(senders)) as pool:
            batches = await asyncio.gather(
                *(
                    asyncio.wrap_future(pool.submit(sender.send_many, server, room_id, each))
                    for sender, server in zip(senders, routes, strict=True)
                )
            )
        answered = [event for batch in batches for event in batch]
        total = each * len(senders)
        # then every gift got its own seq
        assert sorted(event["seq"] for event in answered) == list(range(1, total + 1))
        # and both viewers saw seqs 1..N exactly once, in order, as their senders were answered
        await asyncio.gather(on_a.receive_through(total), on_b.receive_through(total))
        assert on_a.seqs == on_b.seqs == list(range(1, total + 1))
        assert by_seq(on_a.events) == by_seq(on_b.events) == by_seq(answered)
    finally:
        await on_a.close()
        await on_b.close()


@needs_scale_out
async def test_gifts_sent_through_the_wsgi_server_reach_viewers_on_the_asgi_server(server_a, wsgi_server, senders):
    # given a viewer on the ASGI server, and the REST API served by gunicorn
    room_id = "e2e-through-wsgi"
    viewer = await Viewer.open(server_a, room_id)
    try:
        # when 40 gifts are sent through gunicorn, two senders at once
        answered: list[dict] = []
        await asyncio.gather(
            asyncio.to_thread(senders[0].send_many, wsgi_server, room_id, 20, answered),
            asyncio.to_thread(senders[1].send_many, wsgi_server, room_id, 20, answered),
        )
        await viewer.receive_through(40)
        # then the viewer got every one of them, in order, once
        assert viewer.seqs == list(range(1, 41))
        assert by_seq(viewer.events) == by_seq(answered)
    finally:
        await viewer.close()
