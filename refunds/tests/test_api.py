"""A refund as the sender's app reads it back through the viewer REST API."""

import pytest

from gifts.models import GiftEvent
from refunds.services import gift_refund

pytestmark = pytest.mark.django_db


def test_the_sender_sees_the_refund_in_their_send_balance_statement_and_the_room(viewer, room, rose, client_for):
    client = client_for(viewer)
    sent = client.post(
        f"/api/rooms/{room.room_id}/gifts/", {"gift_id": "rose", "msg_id": "m1", "num": 4}, format="json"
    )
    assert sent.status_code == 201, sent.data

    gift_refund(event=GiftEvent.objects.get(msg_id="m1"), reason="mistake")

    send = client.get("/api/me/sends/m1/").json()
    assert send["refunded"] is True and send["event"]["kind"] == "gift"
    assert client.get("/api/me/").json()["coins"] == 10_000
    [newest, *_] = client.get("/api/wallet/entries/").json()["results"]
    assert newest["amount"] == 40
    events = client.get(f"/api/rooms/{room.room_id}/events/?since=0").json()["events"]
    assert [(event["seq"], event["kind"], event["reverses_seq"]) for event in events] == [
        (1, "gift", None),
        (2, "reversal", 1),
    ]
    board = client.get(f"/api/rooms/{room.room_id}/leaderboard/?period=all").json()
    assert board["entries"] == []
    wall = client.get(f"/api/hosts/{room.host.user_id}/gifts/").json()
    assert wall["gifts"] == []
