"""What viewers watching a room see of its goal: in the snapshot, then one `goal` message per window that moved it."""

import uuid

import pytest
from channels.db import database_sync_to_async

from engagement.services import room_goal_set
from gifts.services import gifts_send
from gifts.tests.factories import RoomFactory, gift_request
from gifts.tests.test_consumers import connect, receive_until, room_path, send_gifts
from refunds.services import gift_refund

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("realtime_reset")]


@pytest.fixture
def live_room(db):
    return RoomFactory(room_id=f"goal-{uuid.uuid4().hex[:12]}")


def set_goal(room, **goal):
    room_goal_set(room=room, by=room.host, **goal)


async def messages_within(communicator, seconds: float) -> list[dict]:
    messages = []
    while not await communicator.receive_nothing(timeout=seconds):
        messages.append(await communicator.receive_json_from())
    return messages


async def next_goal(communicator, timeout: float = 5) -> dict:
    while True:
        message = await communicator.receive_json_from(timeout=timeout)
        if message["type"] == "goal":
            return message


async def test_the_snapshot_shows_the_goal_and_a_window_of_gifts_moves_it_once(viewer, live_room, rose):
    await database_sync_to_async(set_goal)(live_room, title="Song at 50", target=50)
    await database_sync_to_async(send_gifts)(viewer, live_room, rose, 1, prefix="before")
    communicator = await connect(room_path(live_room))
    snapshot = await communicator.receive_json_from()
    assert snapshot["goal"]["title"] == "Song at 50"
    assert (snapshot["goal"]["progress"], snapshot["goal"]["reached"]) == (10, False)

    # when three gifts commit together
    await database_sync_to_async(gifts_send)([gift_request(viewer, live_room, f"m{n}") for n in range(3)])

    # then the viewer gets them in one `gifts` message, then one `goal` message with all three counted
    messages = await receive_until(communicator, 4)
    goal = await next_goal(communicator)
    assert [message["type"] for message in messages] == ["gifts"]
    assert {key: goal[key] for key in ("type", "room_id", "title", "target", "progress", "reached")} == {
        "type": "goal",
        "room_id": live_room.room_id,
        "title": "Song at 50",
        "target": 50,
        "progress": 40,
        "reached": False,
    }
    assert goal["version"] > snapshot["goal"]["version"]
    # and no other goal message: the goal did not change again
    assert "goal" not in [message["type"] for message in await messages_within(communicator, 0.5)]
    await communicator.disconnect()


async def test_viewers_see_the_goal_set_reached_and_taken_back_by_a_refund(viewer, live_room, rose):
    communicator = await connect(room_path(live_room))
    snapshot = await communicator.receive_json_from()
    assert snapshot["goal"] is None

    await database_sync_to_async(set_goal)(live_room, title="2 roses", target=2, gift_id="rose")
    goal_set = await next_goal(communicator)
    assert (goal_set["progress"], goal_set["reached"], goal_set["gift"]["gift_id"]) == (0, False, "rose")

    [first, _] = await database_sync_to_async(send_gifts)(viewer, live_room, rose, 2, prefix="m")
    reached = await next_goal(communicator)
    while reached["progress"] < 2:  # the two gifts may fall in two windows
        reached = await next_goal(communicator)
    assert reached["reached"] is True

    await database_sync_to_async(gift_refund)(event=first.event)
    taken_back = await next_goal(communicator)
    assert (taken_back["progress"], taken_back["reached"]) == (1, True)
    assert taken_back["version"] > reached["version"] > goal_set["version"]
    await communicator.disconnect()


async def test_a_returning_viewer_is_told_the_goal_with_the_gifts_it_missed(viewer, live_room, rose):
    await database_sync_to_async(set_goal)(live_room, title="goal", target=100)
    await database_sync_to_async(send_gifts)(viewer, live_room, rose, 1, prefix="seen")
    await database_sync_to_async(send_gifts)(viewer, live_room, rose, 2, prefix="missed")

    communicator = await connect(room_path(live_room, "since=1"))

    messages = await receive_until(communicator, 3)
    goal = await next_goal(communicator)
    assert [event["seq"] for message in messages for event in message.get("events", [])] == [2, 3]
    assert goal["progress"] == 30
    await communicator.disconnect()
