"""Co-hosts: a gift may name any of a room's hosts as receiver; the share and the gift wall follow it."""

import pytest

from gifts.models import GiftEvent, HostGiftCount, RoomCohost
from gifts.results import Result
from gifts.services import gift_send, gifts_send
from gifts.tests.factories import gift_request
from refunds.services import gift_refund
from wallets.selectors import profile_balances
from wallets.tests.factories import ProfileFactory
from wallets.tests.ledger import assert_ledger_sound

pytestmark = pytest.mark.django_db


@pytest.fixture
def guest(room):
    guest = ProfileFactory(user_id="guest")
    RoomCohost.objects.create(room=room, profile=guest)
    return guest


def test_a_gift_to_a_cohost_pays_the_cohost_and_grows_their_wall(viewer, room, rose, guest):
    outcome = gift_send(gift_request(viewer, room, "m1", num=4, receiver="guest"))

    assert outcome.ok and outcome.event.receiver == guest
    assert profile_balances(guest)["earnings"] == 20
    assert profile_balances(room.host)["earnings"] == 0
    assert HostGiftCount.objects.get(host=guest, gift=rose).count == 4
    assert not HostGiftCount.objects.filter(host=room.host).exists()
    assert_ledger_sound()


def test_the_host_stays_the_default_receiver(viewer, room, rose, guest):
    for msg_id, receiver in (("m1", None), ("m2", "hostess")):
        assert gift_send(gift_request(viewer, room, msg_id, receiver=receiver)).event.receiver == room.host
    assert profile_balances(room.host)["earnings"] == 10 and profile_balances(guest)["earnings"] == 0


def test_a_receiver_who_is_no_host_of_the_room_is_10003_and_charges_nothing(viewer, room, rose, guest):
    stranger = ProfileFactory(user_id="stranger")

    outcomes = gifts_send(
        [
            gift_request(viewer, room, "m1", receiver="stranger"),
            gift_request(viewer, room, "m2", receiver="nobody-at-all"),
            gift_request(viewer, room, "m3", receiver="guest"),
        ]
    )

    assert [outcome.result for outcome in outcomes] == [Result.DELIVERY_FAILED, Result.DELIVERY_FAILED, 0]
    assert "not the room's host or one of its co-hosts" in outcomes[0].message
    assert profile_balances(viewer)["coins"] == 10_000 - 10
    assert profile_balances(stranger)["earnings"] == 0


def test_a_cohost_of_another_room_is_not_a_receiver_here(viewer, room, rose):
    from gifts.tests.factories import RoomFactory

    other = RoomFactory(room_id="other")
    RoomCohost.objects.create(room=other, profile=ProfileFactory(user_id="elsewhere"))

    assert gift_send(gift_request(viewer, room, "m1", receiver="elsewhere")).result == Result.DELIVERY_FAILED


def test_a_cohost_cannot_gift_themselves_but_may_gift_the_host(room, rose, guest):
    from wallets.services import topup_create

    topup_create(profile=guest, amount=100, reference="guest-coins")

    assert gift_send(gift_request(guest, room, "m1", receiver="guest")).result == Result.DELIVERY_FAILED
    assert gift_send(gift_request(guest, room, "m2")).ok


def test_refunding_a_cohosts_gift_takes_the_share_back_from_the_cohost(viewer, room, rose, guest):
    event = gift_send(gift_request(viewer, room, "m1", num=2, receiver="guest")).event

    refund = gift_refund(event=event).refund

    assert refund.host_coins == 10
    assert profile_balances(guest)["earnings"] == 0 and profile_balances(viewer)["coins"] == 10_000
    assert HostGiftCount.objects.get(host=guest, gift=rose).count == 0
    assert_ledger_sound()


# --- the host names co-hosts: PUT /api/rooms/{room_id}/cohosts/ -----------------------------------


def test_the_host_names_cohosts_and_the_room_detail_lists_them(room, client_for, viewer):
    ProfileFactory(user_id="guest1", nickname="Guest One")
    ProfileFactory(user_id="guest2")
    host = client_for(room.host)

    named = host.put(f"/api/rooms/{room.room_id}/cohosts/", {"user_ids": ["guest1", "guest2"]}, format="json")
    replaced = host.put(f"/api/rooms/{room.room_id}/cohosts/", {"user_ids": ["guest2"]}, format="json")

    assert named.status_code == 200
    assert [person["user_id"] for person in named.json()["cohosts"]] == ["guest1", "guest2"]
    assert [person["user_id"] for person in replaced.json()["cohosts"]] == ["guest2"]
    detail = client_for(viewer).get(f"/api/rooms/{room.room_id}/").json()
    assert detail["cohosts"] == [{"user_id": "guest2", "nickname": "Nick guest2", "avatar": ""}]


def test_only_the_host_may_name_cohosts(room, client_for, viewer, api_client):
    ProfileFactory(user_id="guest1")
    url = f"/api/rooms/{room.room_id}/cohosts/"

    by_viewer = client_for(viewer).put(url, {"user_ids": ["guest1"]}, format="json")
    anonymous = api_client.put(url, {"user_ids": ["guest1"]}, format="json")

    assert by_viewer.status_code == 403 and by_viewer.json()["code"] == 7200001
    assert anonymous.status_code == 401
    assert not RoomCohost.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"user_ids": "guest1"},
        {"user_ids": ["nobody"]},
        {"user_ids": ["hostess"]},
        {"user_ids": [f"g{index}" for index in range(9)]},
        {"user_ids": [""]},
        {"user_ids": [5]},
    ],
)
def test_bad_cohost_lists_are_7200003_and_change_nothing(room, client_for, body):
    for index in range(9):
        ProfileFactory(user_id=f"g{index}")
    RoomCohost.objects.create(room=room, profile=ProfileFactory(user_id="kept"))

    response = client_for(room.host).put(f"/api/rooms/{room.room_id}/cohosts/", body, format="json")

    assert response.status_code == 400 and response.json()["code"] == 7200003
    assert list(RoomCohost.objects.values_list("profile__user_id", flat=True)) == ["kept"]


def test_a_gift_event_names_its_receiver_for_every_viewer(viewer, room, rose, guest, client_for):
    sent = client_for(viewer).post(
        f"/api/rooms/{room.room_id}/gifts/",
        {"gift_id": "rose", "msg_id": "m1", "receiver_id": "guest"},
        format="json",
    )

    assert sent.status_code == 201 and sent.json()["event"]["receiver_id"] == "guest"
    assert GiftEvent.objects.get().receiver == guest


def test_the_server_api_names_a_cohost_with_receiver_id(client, room, rose, guest):
    from gifts.models import ServerApp
    from gifts.tests.test_server_api import call, item

    ServerApp.objects.create(app_id="1000001", secret="demo-secret")
    fan = ProfileFactory(user_id="fan1", coins=100)
    body = {
        "RoomId": room.room_id,
        "GiftList": [
            item("s1", gift_id="rose", value=1, ReceiverId="guest"),
            item("s2", gift_id="rose", value=1, ReceiverId="stranger"),
        ],
    }

    data = call(client, body)

    assert [row["Result"] for row in data["Data"]["Results"]] == [0, 10003]
    assert profile_balances(guest)["earnings"] == 5 and profile_balances(fan)["coins"] == 90
