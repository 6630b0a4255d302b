"""What viewers watching a room see of a refund: the reversal in seq order, and the board going down."""

import uuid

import pytest
from channels.db import database_sync_to_async

from gifts.tests.factories import RoomFactory
from gifts.tests.test_consumers import connect, receive_until, room_path, send_gifts
from refunds.services import gift_refund

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("realtime_reset")]


@pytest.fixture
def live_room(db):
    return RoomFactory(room_id=f"refund-{uuid.uuid4().hex[:12]}")


async def test_a_refund_reaches_watching_viewers_as_a_reversal_and_the_board_goes_down(viewer, live_room, rose):
    [first, _] = await database_sync_to_async(send_gifts)(viewer, live_room, rose, 2, prefix="m")
    communicator = await connect(room_path(live_room))
    snapshot = await communicator.receive_json_from()
    assert snapshot["leaderboard"][0]["coins"] == 20

    await database_sync_to_async(gift_refund)(event=first.event, reason="mistake")

    messages = await receive_until(communicator, 3)
    [reversal] = [event for message in messages if message["type"] == "gifts" for event in message["events"]]
    assert (reversal["seq"], reversal["kind"], reversal["reverses_seq"]) == (3, "reversal", 1)
    assert (reversal["msg_id"], reversal["sender"]["user_id"], reversal["coins"]) == ("m0", "alice", 10)
    board = await communicator.receive_json_from(timeout=5)
    assert board["type"] == "leaderboard"
    assert [(row["user_id"], row["coins"]) for row in board["entries"]] == [("alice", 10)]
    await communicator.disconnect()


async def test_a_viewer_who_reconnects_after_a_refund_catches_up_with_the_reversal(viewer, live_room, rose):
    [first] = await database_sync_to_async(send_gifts)(viewer, live_room, rose, 1, prefix="m")
    await database_sync_to_async(gift_refund)(event=first.event)

    communicator = await connect(room_path(live_room, "since=1"))

    messages = await receive_until(communicator, 2)
    events = [event for message in messages if message["type"] == "gifts" for event in message["events"]]
    events += [event for message in messages if message["type"] == "snapshot" for event in message["recent"]]
    assert [(event["seq"], event["kind"]) for event in events if event["seq"] > 1] == [(2, "reversal")]
    await communicator.disconnect()
