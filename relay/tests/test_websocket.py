"""A room's viewers hear when the game would not take some of its gifts."""

import uuid

import pytest
from channels.db import database_sync_to_async

from gifts.services import game_join, gifts_send, room_for_gifts
from gifts.tests.factories import (
    GiftFactory,
    MiniGameFactory,
    RoomFactory,
    ValueTierFactory,
    gift_request,
    started_game,
)
from gifts.tests.test_consumers import connect
from relay.services import Relay
from wallets.tests.factories import ProfileFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("realtime_reset")]


def relayed_room_with_gifts() -> tuple[str, list[int], str]:
    """A room running a relayed game, with three paid gifts of two fans; the game will refuse fan2's."""
    room = RoomFactory(room_id=f"ws-{uuid.uuid4().hex[:12]}")
    game = MiniGameFactory(relay=True)
    ValueTierFactory(mini_game=game, gift=GiftFactory(gift_id="g1", price=1), value=10)
    started_game(room, game)
    fans = [ProfileFactory(coins=1_000) for _ in range(2)]
    for fan in fans:
        game_join(room=room, profile=fan)
    room, session = room_for_gifts(room.room_id)
    outcomes = gifts_send(
        [
            gift_request(fan, room, f"w{n}", gift_code="g1", value=10, session=session)
            for n, fan in enumerate([fans[0], fans[1], fans[1]])
        ]
    )
    return room.room_id, [outcome.event.seq for outcome in outcomes], fans[1].user_id


async def test_gifts_the_game_refused_reach_the_rooms_viewers_in_one_delivery_message(vendor):
    room_id, seqs, refused_user = await database_sync_to_async(relayed_room_with_gifts)()
    vendor.user_results[refused_user] = (10003, "user not in game")
    communicator = await connect(f"/ws/rooms/{room_id}/")
    assert (await communicator.receive_json_from())["type"] == "snapshot"

    await database_sync_to_async(Relay().deliver_once)()

    message = await communicator.receive_json_from(timeout=5)
    assert message == {
        "type": "delivery",
        "room_id": room_id,
        "failed": [
            {"seq": seqs[1], "code": 10003, "message": "user not in game"},
            {"seq": seqs[2], "code": 10003, "message": "user not in game"},
        ],
    }
    await communicator.disconnect()
