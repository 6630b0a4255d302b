"""What viewers of a PK battle's rooms see: the battle in the snapshot, `pk` messages as scores
change, and the end, the same in every room and as the API answers it."""

import datetime
import uuid

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone

from engagement.models import PkBattle
from engagement.services import pk_battle_start, pk_battles_end_due
from gifts.tests.factories import RoomFactory
from gifts.tests.test_consumers import connect, room_path, send_gifts

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("realtime_reset")]


@pytest.fixture
def rooms(db):
    tag = uuid.uuid4().hex[:10]
    return RoomFactory(room_id=f"pk-red-{tag}"), RoomFactory(room_id=f"pk-blue-{tag}")


async def next_of(communicator, kind: str, timeout: float = 5) -> dict:
    while True:
        message = await communicator.receive_json_from(timeout=timeout)
        if message["type"] == kind:
            return message


def scores(message: dict) -> dict[str, int]:
    return {side["room_id"]: side["score"] for side in message["sides"]}


def start(red, blue) -> int:
    return pk_battle_start(room_ids=[red.room_id, blue.room_id], duration_s=60, source="staff").pk


def end_now(pk_id: int) -> list[int]:
    PkBattle.objects.filter(pk=pk_id).update(ends_at=timezone.now() - datetime.timedelta(milliseconds=1))
    return pk_battles_end_due()


async def test_viewers_of_both_rooms_follow_the_scores_and_see_the_same_end_as_the_api(viewer, rooms, rose):
    red, blue = rooms
    red_viewer = await connect(room_path(red))
    assert (await red_viewer.receive_json_from())["pk"] is None
    blue_viewer = await connect(room_path(blue))
    await blue_viewer.receive_json_from()

    pk_id = await database_sync_to_async(start)(red, blue)
    for communicator in (red_viewer, blue_viewer):
        started = await next_of(communicator, "pk")
        assert (started["pk_id"], started["state"]) == (pk_id, "running")
        assert scores(started) == {red.room_id: 0, blue.room_id: 0}

    # a gift in the red room: the blue room's viewers hear of it too
    await database_sync_to_async(send_gifts)(viewer, red, rose, 3, prefix="r")
    for communicator in (red_viewer, blue_viewer):
        message = await next_of(communicator, "pk")
        while scores(message)[red.room_id] < 30:  # the three may fall in two windows
            message = await next_of(communicator, "pk")
        assert scores(message) == {red.room_id: 30, blue.room_id: 0}
        assert message["sides"][0]["top"][0] == {"user_id": "alice", "nickname": "Nick alice", "coins": 30}

    await database_sync_to_async(end_now)(pk_id)
    answer = await database_sync_to_async(lambda: Client().get(f"/api/pk/{pk_id}/").json())()
    for communicator, room in ((red_viewer, red), (blue_viewer, blue)):
        pk_end, ended = None, None
        while pk_end is None or ended is None or ended["state"] != "ended":
            message = await communicator.receive_json_from(timeout=5)
            if message["type"] == "gifts" and message["events"][-1]["kind"] == "pk_end":
                pk_end = message["events"][-1]
            elif message["type"] == "pk":
                ended = message
        assert (pk_end["seq"], pk_end["pk_id"]) == (4 if room is red else 1, pk_id)
        assert (ended["state"], ended["winner_room_id"], ended["room_id"]) == ("ended", red.room_id, room.room_id)
        assert ended["sides"] == answer["sides"]
    for communicator in (red_viewer, blue_viewer):
        await communicator.disconnect()


async def test_a_viewer_who_joins_mid_battle_gets_it_in_the_snapshot(viewer, rooms, rose):
    red, blue = rooms
    pk_id = await database_sync_to_async(start)(red, blue)
    await database_sync_to_async(send_gifts)(viewer, blue, rose, 2, prefix="b")

    communicator = await connect(room_path(blue))
    snapshot = await communicator.receive_json_from()

    assert (snapshot["pk"]["pk_id"], snapshot["pk"]["state"]) == (pk_id, "running")
    assert scores(snapshot["pk"]) == {red.room_id: 0, blue.room_id: 20}
    await communicator.disconnect()
