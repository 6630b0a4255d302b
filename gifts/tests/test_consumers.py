"""The room websocket as a viewer sees it, through Channels' WebsocketCommunicator and the real database."""

import asyncio
import json
import threading
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from gifting_site.asgi import application
from gifts import broadcast, consumers, roomhub
from gifts.api import ws_ticket_key
from gifts.services import GiftRequest, gift_send
from gifts.tests.factories import RoomFactory, ValueTierFactory, started_game
from wallets.tests.factories import ProfileFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("realtime_reset")]

ORIGIN = (b"origin", b"http://testserver")


@pytest.fixture
def live_room(db):
    # Unique per test run: the Redis channel layer may be shared with other runs.
    return RoomFactory(room_id=f"ws-{uuid.uuid4().hex[:12]}")


async def connect(path: str, headers=(ORIGIN,)) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=list(headers))
    connected, _ = await communicator.connect()
    assert connected
    return communicator


def room_path(room, query: str = "") -> str:
    return f"/ws/rooms/{room.room_id}/" + (f"?{query}" if query else "")


def send_gifts(viewer, room, gift, count: int, *, prefix: str, game_session=None, value: int = 1) -> list:
    outcomes = [
        gift_send(
            GiftRequest(
                scope=f"user:{viewer.pk}",
                msg_id=f"{prefix}{n}",
                sender=viewer,
                room=room,
                game_session=game_session,
                gift_code=gift.gift_id,
                value=value,
                num=1,
            )
        )
        for n in range(count)
    ]
    assert [outcome.result for outcome in outcomes] == [0] * count
    return outcomes


async def receive_until(communicator: WebsocketCommunicator, seq: int, timeout: float = 5) -> list[dict]:
    """Every message up to and including the `gifts` message that reaches `seq`."""
    messages = []
    while True:
        message = await communicator.receive_json_from(timeout=timeout)
        messages.append(message)
        if message["type"] == "gifts" and message["to_seq"] >= seq:
            return messages
        if message["type"] == "snapshot" and message["seq"] >= seq:
            return messages


def delivered_seqs(messages: list[dict]) -> list[int]:
    return [event["seq"] for message in messages if message["type"] == "gifts" for event in message["events"]]


async def test_snapshot_on_connect(viewer, live_room, rose):
    # given a live room that already received two roses from alice
    await database_sync_to_async(send_gifts)(viewer, live_room, rose, 2, prefix="before")
    # when an anonymous viewer connects
    communicator = await connect(room_path(live_room))
    snapshot = await communicator.receive_json_from()
    # then the first message is the room as it is now
    assert snapshot["type"] == "snapshot"
    assert snapshot["room_id"] == live_room.room_id
    assert snapshot["seq"] == 2
    assert snapshot["live"] is True
    assert snapshot["game"] is None
    assert [event["seq"] for event in snapshot["recent"]] == [1, 2]
    assert [(row["rank"], row["user_id"], row["coins"]) for row in snapshot["leaderboard"]] == [(1, "alice", 20)]
    await communicator.disconnect()


async def test_gift_sent_through_the_api_arrives_as_a_gifts_event(viewer, live_room, rose, client_for):
    client = await database_sync_to_async(client_for)(viewer)
    communicator = await connect(room_path(live_room))
    assert (await communicator.receive_json_from())["seq"] == 0

    # when alice sends two roses through the REST API
    response = await database_sync_to_async(client.post)(
        f"/api/rooms/{live_room.room_id}/gifts/", {"gift_id": "rose", "msg_id": "m1", "num": 2}, format="json"
    )
    assert response.status_code == 201, response.data

    # then the viewer gets one `gifts` message carrying exactly the event the sender was answered with
    message = await communicator.receive_json_from(timeout=5)
    assert message["type"] == "gifts"
    assert (message["room_id"], message["from_seq"], message["to_seq"]) == (live_room.room_id, 1, 1)
    [event] = message["events"]
    assert event == json.loads(json.dumps(response.data["event"]))
    assert event["sender"]["user_id"] == "alice"
    assert event["gift"]["gift_id"] == "rose"
    assert (event["value"], event["num"], event["count"], event["coins"], event["combo"]) == (1, 2, 2, 20, 1)
    assert set(event) == {
        "seq", "kind", "reverses_seq", "msg_id", "sender", "receiver_id", "gift", "value", "num", "count", "coins",
        "effect", "combo", "at",
    }  # fmt: skip
    assert (event["kind"], event["reverses_seq"]) == ("gift", None)
    # and the changed top 10 follows
    board = await communicator.receive_json_from(timeout=5)
    assert board["type"] == "leaderboard"
    assert (board["seq"], board["period"]) == (1, "live")
    assert [(row["user_id"], row["coins"]) for row in board["entries"]] == [("alice", 20)]
    await communicator.disconnect()


async def test_fifty_gifts_of_one_window_arrive_in_one_message_with_contiguous_seqs(viewer, live_room, rose):
    communicator = await connect(room_path(live_room))
    await communicator.receive_json_from()

    # when 50 gifts commit while the server's loop is busy (as within one merge window)
    def send_fifty() -> None:
        send_gifts(viewer, live_room, rose, 50, prefix="burst")
        connection.close()

    sender = threading.Thread(target=send_fifty)
    sender.start()
    sender.join()  # blocks this loop on purpose: all 50 commits queue up for one window

    # then the viewer gets them in one `gifts` message, in seq order, with the combo counting up
    messages = await receive_until(communicator, 50)
    gifts = [message for message in messages if message["type"] == "gifts"]
    assert len(gifts) == 1
    assert (gifts[0]["from_seq"], gifts[0]["to_seq"]) == (1, 50)
    assert delivered_seqs(gifts) == list(range(1, 51))
    assert [event["combo"] for event in gifts[0]["events"]] == list(range(1, 51))
    board = await communicator.receive_json_from(timeout=5)
    assert board["type"] == "leaderboard" and board["seq"] == 50
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_a_busy_rooms_leaderboard_is_sent_at_most_once_per_interval_and_its_last_change_arrives(
    viewer, live_room, rose, monkeypatch
):
    monkeypatch.setattr(roomhub, "LEADERBOARD_INTERVAL", 2.0)
    rival = await database_sync_to_async(ProfileFactory)(user_id="bob", coins=10_000)
    communicator = await connect(room_path(live_room))
    await communicator.receive_json_from()

    def burst(sender, count: int, prefix: str) -> None:
        send_gifts(sender, live_room, rose, count, prefix=prefix)
        connection.close()

    # when alice sends 5 roses, then bob 10 in the next window
    first = threading.Thread(target=burst, args=(viewer, 5, "a"))
    first.start()
    first.join()
    messages = await receive_until(communicator, 5)
    board = await communicator.receive_json_from(timeout=5)
    assert board["type"] == "leaderboard"
    assert [(row["user_id"], row["coins"]) for row in board["entries"]] == [("alice", 50)]

    second = threading.Thread(target=burst, args=(rival, 10, "b"))
    second.start()
    second.join()
    messages = await receive_until(communicator, 15)

    # then bob's gifts arrive at once, but the changed board waits for the interval
    assert delivered_seqs(messages) == list(range(6, 16))
    assert await communicator.receive_nothing(timeout=0.3)
    board = await communicator.receive_json_from(timeout=5)
    assert (board["type"], board["seq"]) == ("leaderboard", 15)
    assert [(row["user_id"], row["coins"]) for row in board["entries"]] == [("bob", 100), ("alice", 50)]
    await communicator.disconnect()


async def test_since_replays_exactly_the_missed_events(viewer, live_room, rose):
    await database_sync_to_async(send_gifts)(viewer, live_room, rose, 5, prefix="m")
    # when a viewer that has seen up to seq 2 reconnects
    communicator = await connect(room_path(live_room, "since=2"))
    # then it gets seqs 3..5, then the room's current top 10 and game state
    replay = await communicator.receive_json_from()
    assert replay["type"] == "gifts"
    assert (replay["from_seq"], replay["to_seq"]) == (3, 5)
    assert delivered_seqs([replay]) == [3, 4, 5]
    board = await communicator.receive_json_from()
    assert (board["type"], board["seq"], board["entries"][0]["coins"]) == ("leaderboard", 5, 50)
    assert await communicator.receive_json_from() == {"type": "game", "room_id": live_room.room_id, "game": None}
    # and new gifts continue from seq 6
    await database_sync_to_async(send_gifts)(viewer, live_room, rose, 1, prefix="after")
    messages = await receive_until(communicator, 6)
    assert delivered_seqs(messages) == [6]
    await communicator.disconnect()


async def test_since_that_is_up_to_date_replays_nothing(viewer, live_room, rose):
    await database_sync_to_async(send_gifts)(viewer, live_room, rose, 2, prefix="m")
    communicator = await connect(room_path(live_room, "since=2"))
    assert (await communicator.receive_json_from())["type"] == "leaderboard"
    assert (await communicator.receive_json_from())["type"] == "game"
    await communicator.disconnect()


async def test_since_too_old_or_ahead_of_the_room_yields_a_snapshot(viewer, live_room, rose, monkeypatch):
    await database_sync_to_async(send_gifts)(viewer, live_room, rose, 5, prefix="m")
    monkeypatch.setattr(consumers, "REPLAY_LIMIT", 3)  # keep less history than the viewer missed
    too_old = await connect(room_path(live_room, "since=1"))
    snapshot = await too_old.receive_json_from()
    assert (snapshot["type"], snapshot["seq"]) == ("snapshot", 5)
    await too_old.disconnect()

    ahead = await connect(room_path(live_room, "since=99"))
    snapshot = await ahead.receive_json_from()
    assert (snapshot["type"], snapshot["seq"]) == ("snapshot", 5)
    await ahead.disconnect()


async def test_resync_replays_from_the_given_seq(viewer, live_room, rose):
    await database_sync_to_async(send_gifts)(viewer, live_room, rose, 3, prefix="m")
    communicator = await connect(room_path(live_room))
    assert (await communicator.receive_json_from())["seq"] == 3
    # when the client asks again for everything after seq 1
    await communicator.send_json_to({"type": "resync", "since": 1})
    # then it gets seqs 2 and 3 again, oldest first
    replay = await communicator.receive_json_from()
    assert replay["type"] == "gifts"
    assert delivered_seqs([replay]) == [2, 3]
    # and the live stream continues without a repeat
    await database_sync_to_async(send_gifts)(viewer, live_room, rose, 1, prefix="after")
    assert delivered_seqs(await receive_until(communicator, 4)) == [4]
    await communicator.disconnect()


async def test_viewer_who_reconnects_with_since_sees_every_event_exactly_once(viewer, live_room, rose):
    communicator = await connect(room_path(live_room))
    seen = [event["seq"] for event in (await communicator.receive_json_from())["recent"]]
    await database_sync_to_async(send_gifts)(viewer, live_room, rose, 10, prefix="first")
    seen += delivered_seqs(await receive_until(communicator, 10))
    # when the viewer drops while 100 gifts are sent
    await communicator.disconnect()
    await database_sync_to_async(send_gifts)(viewer, live_room, rose, 100, prefix="away")
    # and comes back with the last seq it saw
    communicator = await connect(room_path(live_room, f"since={seen[-1]}"))
    seen += delivered_seqs(await receive_until(communicator, 110))
    # then it has every event exactly once, in order
    assert seen == list(range(1, 111))
    await communicator.disconnect()


async def test_a_lost_broadcast_is_read_back_from_the_database(viewer, live_room, rose, monkeypatch):
    communicator = await connect(room_path(live_room))
    await communicator.receive_json_from()
    # given two gifts whose broadcasts were lost on the way (a Redis hiccup)
    monkeypatch.setattr(broadcast, "gift_events_committed", lambda room_id, payloads, goal=None, pk_id=None: None)
    outcomes = await database_sync_to_async(send_gifts)(viewer, live_room, rose, 2, prefix="lost")
    monkeypatch.undo()
    # when another server process publishes seq 3 only
    third = (await database_sync_to_async(send_gifts)(viewer, live_room, rose, 1, prefix="seen"))[0]
    assert outcomes[-1].event.seq == 2 and third.event.seq == 3
    # then the viewer still gets 1, 2, 3 in order, nothing skipped, nothing twice
    messages = await receive_until(communicator, 3)
    assert delivered_seqs(messages) == [1, 2, 3]
    await communicator.disconnect()


async def test_batches_arriving_out_of_order_are_delivered_in_seq_order(viewer, live_room, rose, monkeypatch):
    communicator = await connect(room_path(live_room))
    await communicator.receive_json_from()
    published = []
    monkeypatch.setattr(
        broadcast, "gift_events_committed", lambda room_id, payloads, goal=None, pk_id=None: published.extend(payloads)
    )
    await database_sync_to_async(send_gifts)(viewer, live_room, rose, 4, prefix="m")
    # when two processes' batches cross: seqs 3-4 arrive before 1-2
    layer, group = get_channel_layer(), broadcast.room_group(live_room.room_id)
    for events in (published[2:], published[:2]):
        await layer.group_send(group, {"type": "room.gifts", "room_id": live_room.room_id, "events": events})
    # then the viewer gets 1..4 once each, in order, and the leaderboard they made
    messages = await receive_until(communicator, 4)
    assert delivered_seqs(messages) == [1, 2, 3, 4]
    board = await communicator.receive_json_from(timeout=5)
    assert (board["type"], board["seq"]) == ("leaderboard", 4)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_game_start_and_end_reach_viewers_and_game_gifts_carry_their_effect(viewer, live_room):
    tier = await database_sync_to_async(ValueTierFactory)(gift__gift_id="g1", value=10, effect="soldier")
    communicator = await connect(room_path(live_room))
    assert (await communicator.receive_json_from())["game"] is None

    session = await database_sync_to_async(started_game)(live_room, tier.mini_game)
    waiting = await communicator.receive_json_from(timeout=5)
    started = await communicator.receive_json_from(timeout=5)
    assert (waiting["type"], waiting["game"]["state"]) == ("game", "waiting")
    assert (started["type"], started["game"]["mini_game_id"], started["game"]["state"]) == (
        "game",
        "TinyLoveWar",
        "started",
    )

    await database_sync_to_async(session.players.add)(viewer)
    await database_sync_to_async(send_gifts)(
        viewer, live_room, tier.gift, 1, prefix="g", game_session=session, value=10
    )
    [event] = [event for message in await receive_until(communicator, 1) for event in message.get("events", [])]
    assert (event["value"], event["num"], event["count"], event["effect"]) == (10, 1, 10, "soldier")

    from gifts.services import game_session_end

    await database_sync_to_async(game_session_end)(session=session)
    ended = None
    while ended is None:
        message = await communicator.receive_json_from(timeout=5)
        ended = message if message["type"] == "game" else None
    assert ended["game"]["state"] == "ended"
    await communicator.disconnect()


async def test_unknown_room_is_refused_with_4404(db):
    communicator = await connect("/ws/rooms/no-such-room/")
    error = await communicator.receive_json_from()
    assert (error["type"], error["code"]) == ("error", 4404)
    closed = await communicator.receive_output()
    assert closed == {"type": "websocket.close", "code": 4404, "reason": "room no-such-room not found"}
    await communicator.disconnect()


@pytest.mark.parametrize("room_id", ["a\x00b", "x" * 65])
async def test_a_room_id_no_room_can_have_is_refused_with_4404(db, room_id):
    communicator = await connect(f"/ws/rooms/{room_id}/")
    error = await communicator.receive_json_from()
    assert (error["type"], error["code"]) == ("error", 4404)
    closed = await communicator.receive_output()
    assert (closed["type"], closed["code"]) == ("websocket.close", 4404)
    await communicator.disconnect()


async def test_foreign_origin_is_refused(live_room):
    communicator = WebsocketCommunicator(
        application, room_path(live_room), headers=[(b"origin", b"https://evil.example")]
    )
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()


async def test_malformed_since_is_refused_with_4400(live_room):
    communicator = await connect(room_path(live_room, "since=-3"))
    assert (await communicator.receive_json_from())["code"] == 4400
    assert (await communicator.receive_output())["code"] == 4400
    await communicator.disconnect()


async def test_ticket_identifies_the_viewer_once(viewer, live_room):
    await database_sync_to_async(cache.set)(ws_ticket_key("t-1"), viewer.login.pk, 60)
    # a fresh ticket lets the viewer in
    first = await connect(room_path(live_room, "ticket=t-1"))
    assert (await first.receive_json_from())["type"] == "snapshot"
    await first.disconnect()
    # the same ticket a second time is refused
    second = await connect(room_path(live_room, "ticket=t-1"))
    assert (await second.receive_json_from())["code"] == 4401
    assert (await second.receive_output())["code"] == 4401
    await second.disconnect()


async def test_bad_client_messages_get_an_error_and_the_socket_keeps_working(live_room):
    communicator = await connect(room_path(live_room))
    await communicator.receive_json_from()
    for bad in ("not json", "[1, 2]", '{"type": "dance"}', '{"type": "resync", "since": "x"}', '{"type": "resync"}'):
        await communicator.send_to(text_data=bad)
        error = await communicator.receive_json_from()
        assert (error["type"], error["code"]) == ("error", 7200003), bad
    await communicator.send_to(bytes_data=b"\x00\x01")
    assert (await communicator.receive_json_from())["type"] == "error"
    # still alive
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.disconnect()


async def test_huge_frame_closes_the_socket(live_room):
    communicator = await connect(room_path(live_room))
    await communicator.receive_json_from()
    await communicator.send_to(text_data=json.dumps({"type": "ping", "pad": "x" * 100_000}))
    assert (await communicator.receive_output())["code"] == 4009
    await communicator.disconnect()


async def test_a_client_flooding_the_socket_is_closed_after_a_short_burst(live_room):
    communicator = await connect(room_path(live_room))
    await communicator.receive_json_from()  # the snapshot
    for _ in range(consumers.INBOUND_BURST):
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_output())["code"] == 4008
    await communicator.disconnect()


@pytest.mark.skipif(not settings.REDIS_URL, reason="the Redis channel layer's own wait for messages")
async def test_a_room_quiet_for_longer_than_a_redis_wait_keeps_its_subscription(viewer, live_room, rose, caplog):
    communicator = await connect(room_path(live_room))
    await communicator.receive_json_from()

    # when nothing happens in the room for longer than the hub's 5-second wait for its next message
    await asyncio.sleep(6.5)
    outcome = (await database_sync_to_async(send_gifts)(viewer, live_room, rose, 1, prefix="late"))[0]

    # then the gift arrives within a window, and the hub never took the quiet for a lost layer
    message = await communicator.receive_json_from(timeout=1)
    assert (message["type"], message["to_seq"]) == ("gifts", outcome.event.seq)
    assert not [record for record in caplog.records if "lost its channel layer" in record.getMessage()]
    await communicator.disconnect()
