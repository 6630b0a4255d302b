"""Publishing where no server loop runs: WSGI workers, management commands, the admin."""

import asyncio
import threading

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from gifts import broadcast
from gifts.services import gift_send, gifts_send
from gifts.tests.factories import RoomFactory, gift_request
from wallets.tests.factories import ProfileFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.REDIS_URL,
        reason="needs Redis: without it the channel layer lives in one process, and a process with "
        "websockets publishes from its server loop",
    ),
]


def listening_to(room):
    """A channel in the room's group; returns a function that reads gifts messages until `count` events came."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(broadcast.room_group(room.room_id), channel)

    # One loop for all the reading: channels_redis buffers a process's channels per receiving loop.
    @async_to_sync
    async def events(count: int) -> list[list[tuple[int, str]]]:
        received: list[list[tuple[int, str]]] = []
        while sum(map(len, received)) < count:
            message = await asyncio.wait_for(layer.receive(channel), timeout=5)
            assert message["type"] == "room.gifts"
            received.append([(event["seq"], event["msg_id"]) for event in message["events"]])
        return received

    return events


def test_a_batch_committed_outside_a_server_loop_reaches_the_room_as_one_message(rose):
    room = RoomFactory()
    fan = ProfileFactory(coins=100)
    receive = listening_to(room)

    # when a batch of three gifts commits in a thread with no event loop, as under WSGI
    gifts_send([gift_request(fan, room, f"m{index}") for index in range(3)])
    broadcast.flush()

    # then the room's watchers get one message with all three, in seq order
    assert receive(3) == [[(1, "m0"), (2, "m1"), (3, "m2")]]


def test_sends_from_many_threads_share_one_publishing_thread(rose):
    room = RoomFactory()
    fans = [ProfileFactory(coins=100) for _ in range(4)]
    receive = listening_to(room)

    threads = [
        threading.Thread(target=gift_send, args=(gift_request(fan, room, f"t{index}"),))
        for index, fan in enumerate(fans)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    broadcast.flush()

    messages = receive(4)  # gifts committed in different batches may travel apart
    assert sorted(seq for message in messages for seq, _ in message) == [1, 2, 3, 4]
    assert [thread.name for thread in threading.enumerate()].count("gift-publisher") == 1
