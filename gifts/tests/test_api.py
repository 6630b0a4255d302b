"""The viewer REST API as a mobile app sees it: status codes, {code, message} bodies, balances."""

import json

import pytest
from django.core.cache import cache

from gifts.api import GiftSendThrottle
from gifts.models import GiftEvent, GiftReceipt
from gifts.services import room_go_off_air
from gifts.tests.factories import GiftFactory, RoomFactory, ValueTierFactory, started_game
from wallets.models import Entry
from wallets.selectors import ledger_totals, profile_balances
from wallets.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


def send_url(room_id: str) -> str:
    return f"/api/rooms/{room_id}/gifts/"


def snapshot(viewer, host):
    return (
        profile_balances(viewer),
        profile_balances(host),
        GiftEvent.objects.count(),
        GiftReceipt.objects.count(),
        Entry.objects.count(),
    )


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


def test_send_gift_moves_coins_and_returns_the_event(viewer, room, rose, client_for):
    # given a viewer with 10,000 coins in a live room
    # when they send 3 roses (10 coins each)
    response = client_for(viewer).post(
        send_url(room.room_id), {"gift_id": "rose", "msg_id": "m1", "num": 3}, format="json"
    )
    # then they are charged 30 coins and the host earns half
    assert response.status_code == 201, response.data
    assert response.data["result"] == 0
    assert response.data["coins_balance"] == 9_970
    assert response.data["event"]["seq"] == 1
    assert response.data["event"]["coins"] == 30
    assert profile_balances(viewer)["coins"] == 9_970
    assert profile_balances(room.host)["earnings"] == 15


def test_same_msg_id_again_returns_stored_body_and_moves_nothing(viewer, room, rose, client_for):
    client = client_for(viewer)
    first = client.post(send_url(room.room_id), {"gift_id": "rose", "msg_id": "m1"}, format="json")
    before = snapshot(viewer, room.host)
    again = client.post(send_url(room.room_id), {"gift_id": "rose", "msg_id": "m1"}, format="json")
    assert again.status_code == 200
    assert again.data == first.data
    assert snapshot(viewer, room.host) == before


def test_msg_id_reused_for_a_different_gift_is_409_10008(viewer, room, rose, client_for):
    client = client_for(viewer)
    client.post(send_url(room.room_id), {"gift_id": "rose", "msg_id": "m1"}, format="json")
    before = snapshot(viewer, room.host)[:2]
    response = client.post(send_url(room.room_id), {"gift_id": "rose", "msg_id": "m1", "num": 2}, format="json")
    assert response.status_code == 409
    assert response.data["code"] == 10008
    assert snapshot(viewer, room.host)[:2] == before


def test_insufficient_balance_is_422_10007_and_replays_the_same_failure(room, rose, client_for):
    poor = ProfileFactory(coins=5)
    client = client_for(poor)
    response = client.post(send_url(room.room_id), {"gift_id": "rose", "msg_id": "m1"}, format="json")
    assert response.status_code == 422
    assert response.data == {"code": 10007, "message": response.data["message"]}
    assert profile_balances(poor)["coins"] == 5
    again = client.post(send_url(room.room_id), {"gift_id": "rose", "msg_id": "m1"}, format="json")
    assert (again.status_code, again.data) == (422, response.data)
    # a top-up does not turn a settled failure into a success
    assert profile_balances(poor)["coins"] == 5
    assert GiftEvent.objects.count() == 0


def test_unknown_and_inactive_gift_are_404_10004(viewer, room, client_for):
    GiftFactory(gift_id="old", is_active=False)
    client = client_for(viewer)
    for index, gift_id in enumerate(["nope", "old"]):
        response = client.post(send_url(room.room_id), {"gift_id": gift_id, "msg_id": f"m{index}"}, format="json")
        assert response.status_code == 404
        assert response.data["code"] == 10004
    assert profile_balances(viewer)["coins"] == 10_000


def test_unknown_room_and_room_off_air_are_404_7200004(viewer, rose, client_for):
    off_air = RoomFactory(live=False)
    client = client_for(viewer)
    for room_id in ["nowhere", off_air.room_id]:
        response = client.post(send_url(room_id), {"gift_id": "rose", "msg_id": "m1"}, format="json")
        assert response.status_code == 404
        assert response.data["code"] == 7200004
    live = RoomFactory()
    room_go_off_air(room=live)
    response = client.post(send_url(live.room_id), {"gift_id": "rose", "msg_id": "m2"}, format="json")
    assert response.data["code"] == 7200004
    assert GiftReceipt.objects.count() == 0


@pytest.mark.parametrize("header", [None, "Token nope", "Bearer x", "Token "])
def test_missing_or_bad_token_is_401(room, rose, api_client, header):
    if header is not None:
        api_client.credentials(HTTP_AUTHORIZATION=header)
    response = api_client.post(send_url(room.room_id), {"gift_id": "rose", "msg_id": "m1"}, format="json")
    assert response.status_code == 401
    assert set(response.data) == {"code", "message"}
    assert response.data["code"] == 7200001


def test_receiver_not_the_host_is_422_10003(viewer, room, rose, client_for):
    ProfileFactory(user_id="someone")
    response = client_for(viewer).post(
        send_url(room.room_id), {"gift_id": "rose", "msg_id": "m1", "receiver_id": "someone"}, format="json"
    )
    assert response.status_code == 422
    assert response.data["code"] == 10003
    assert profile_balances(viewer)["coins"] == 10_000


def test_receiver_id_naming_the_host_is_accepted(viewer, room, rose, client_for):
    response = client_for(viewer).post(
        send_url(room.room_id), {"gift_id": "rose", "msg_id": "m1", "receiver_id": room.host.user_id}, format="json"
    )
    assert response.status_code == 201


BAD_BODIES = [
    {"gift_id": "rose", "msg_id": "m1", "num": -1},
    {"gift_id": "rose", "msg_id": "m1", "num": 0},
    {"gift_id": "rose", "msg_id": "m1", "num": 10**30},
    {"gift_id": "rose", "msg_id": "m1", "num": 1.5},
    {"gift_id": "rose", "msg_id": "m1", "num": 1.0},
    {"gift_id": "rose", "msg_id": "m1", "num": "2"},
    {"gift_id": "rose", "msg_id": "m1", "num": True},
    {"gift_id": "rose", "msg_id": "m1", "num": None},
    {"gift_id": "rose", "msg_id": "m1", "value": -1},
    {"gift_id": "rose", "msg_id": "m1", "value": 0},
    {"gift_id": "rose", "msg_id": "m1", "value": 10**30},
    {"gift_id": "rose", "msg_id": "m1", "value": 2.5},
    {"gift_id": "rose", "msg_id": "m1", "value": "1"},
    {"gift_id": "rose", "msg_id": "m1", "value": False},
    {"gift_id": "rose"},
    {"gift_id": "rose", "msg_id": ""},
    {"gift_id": "rose", "msg_id": "x" * 5000},
    {"gift_id": "rose", "msg_id": 123},
    {"gift_id": "rose", "msg_id": ["m1"]},
    {"gift_id": "rose", "msg_id": {"a": 1}},
    {"gift_id": 7, "msg_id": "m1"},
    {"msg_id": "m1"},
    {"gift_id": "rose", "msg_id": "m1", "receiver_id": 5},
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_malformed_json_bodies_are_400_and_change_nothing(viewer, room, rose, client_for, body):
    before = snapshot(viewer, room.host)
    response = client_for(viewer).post(send_url(room.room_id), json.dumps(body), content_type="application/json")
    assert response.status_code == 400, response.data
    assert response.data["code"] == 7200003
    assert isinstance(response.data["message"], str) and response.data["message"]
    assert snapshot(viewer, room.host) == before


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '["gift_id"]', "42", '"rose"', "null", "{"])
def test_non_object_bodies_are_4xx_with_a_code(viewer, room, rose, client_for, raw):
    before = snapshot(viewer, room.host)
    response = client_for(viewer).post(send_url(room.room_id), raw, content_type="application/json")
    assert 400 <= response.status_code < 500
    assert set(response.json()) == {"code", "message"}
    assert snapshot(viewer, room.host) == before


def test_throttle_answers_429_7200005(viewer, room, rose, client_for, monkeypatch):
    monkeypatch.setattr(GiftSendThrottle, "THROTTLE_RATES", {"gift_send": "2/min"})
    client = client_for(viewer)
    codes = [
        client.post(send_url(room.room_id), {"gift_id": "rose", "msg_id": f"m{i}"}, format="json") for i in range(3)
    ]
    assert [r.status_code for r in codes] == [201, 201, 429]
    assert codes[2].data["code"] == 7200005
    # The window is a minute: the client is told how many whole seconds to wait.
    assert 1 <= int(codes[2]["Retry-After"]) <= 60
    assert profile_balances(viewer)["coins"] == 10_000 - 20
    # the limit is per user: somebody else in the same room still gets through
    other = ProfileFactory(coins=100)
    response = client_for(other).post(send_url(room.room_id), {"gift_id": "rose", "msg_id": "m0"}, format="json")
    assert response.status_code == 201


# --- game rules ----------------------------------------------------------------------------------


@pytest.fixture
def game_room(db):
    room = RoomFactory(room_id="arena")
    g1 = GiftFactory(gift_id="g1", price=1)
    ValueTierFactory(gift=g1, value=10, effect="soldier")
    ValueTierFactory(gift=g1, value=66, effect="general")
    started_game(room)
    return room


def test_game_rules(viewer, game_room, client_for):
    client = client_for(viewer)
    url = send_url(game_room.room_id)
    # not joined -> 10003
    response = client.post(url, {"gift_id": "g1", "msg_id": "a", "value": 10}, format="json")
    assert (response.status_code, response.data["code"]) == (422, 10003)
    joined = client.post(f"/api/rooms/{game_room.room_id}/game/join/")
    assert joined.status_code == 200 and joined.data["joined"] is True
    # a tier that does not exist -> 10004 listing the valid ones
    response = client.post(url, {"gift_id": "g1", "msg_id": "b", "value": 11}, format="json")
    assert response.data["code"] == 10004
    assert "10" in response.data["message"] and "66" in response.data["message"]
    # a good tier -> the event carries value, num, count and effect
    response = client.post(url, {"gift_id": "g1", "msg_id": "c", "value": 66, "num": 2}, format="json")
    assert response.status_code == 201, response.data
    event = response.data["event"]
    assert (event["value"], event["num"], event["count"], event["effect"], event["coins"]) == (
        66,
        2,
        132,
        "general",
        132,
    )
    assert profile_balances(viewer)["coins"] == 10_000 - 132


def test_join_without_a_game_is_refused_with_a_code(viewer, room, client_for):
    response = client_for(viewer).post(f"/api/rooms/{room.room_id}/game/join/")
    assert 400 <= response.status_code < 500
    assert response.data["code"] in (7202001, 7206001)


def test_combo_counts_up_for_the_same_gift_and_resets_for_another(viewer, room, rose, client_for):
    GiftFactory(gift_id="car", price=50)
    client = client_for(viewer)
    combos = []
    for index, gift_id in enumerate(["rose", "rose", "rose", "car", "rose"]):
        response = client.post(send_url(room.room_id), {"gift_id": gift_id, "msg_id": f"m{index}"}, format="json")
        combos.append(response.data["event"]["combo"])
    assert combos == [1, 2, 3, 1, 1]


# --- reads ---------------------------------------------------------------------------------------


def test_catalog_hides_inactive_gifts(api_client, rose):
    GiftFactory(gift_id="old", is_active=False)
    response = api_client.get("/api/gifts/")
    assert response.status_code == 200
    assert [gift["gift_id"] for gift in response.data] == ["rose"]


def test_me_shows_both_balances(viewer, room, rose, client_for):
    client_for(viewer).post(send_url(room.room_id), {"gift_id": "rose", "msg_id": "m1"}, format="json")
    me = client_for(viewer).get("/api/me/").data
    host = client_for(room.host).get("/api/me/").data
    assert (me["user_id"], me["coins"], me["earnings"]) == ("alice", 9_990, 0)
    assert (host["coins"], host["earnings"]) == (0, 5)


def test_me_needs_a_token(api_client, db):
    response = api_client.get("/api/me/")
    assert response.status_code == 401 and response.data["code"] == 7200001


def test_wallet_entries_newest_first_with_cursor_pages(viewer, room, rose, client_for, monkeypatch):
    monkeypatch.setattr(GiftSendThrottle, "THROTTLE_RATES", {"gift_send": "1000/s"})
    client = client_for(viewer)
    for index in range(60):
        client.post(send_url(room.room_id), {"gift_id": "rose", "msg_id": f"m{index}"}, format="json")
    first = client.get("/api/wallet/entries/").data
    assert len(first["results"]) == 50
    assert first["results"][0]["balance_after"] == 10_000 - 600
    assert first["results"][0]["amount"] == -10
    second = client.get(first["next"]).data
    # 60 gifts + 1 top-up = 61 lines
    assert len(second["results"]) == 11
    assert second["results"][-1]["kind"] == "top_up" or second["results"][-1]["amount"] == 10_000
    ids = [row["id"] for row in first["results"] + second["results"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 61
    bad = client.get("/api/wallet/entries/?cursor=garbage")
    assert bad.status_code == 400 and bad.data["code"] == 7200003


def test_wallet_entries_show_only_the_callers_lines(viewer, room, rose, client_for):
    client_for(viewer).post(send_url(room.room_id), {"gift_id": "rose", "msg_id": "m1"}, format="json")
    host_lines = client_for(room.host).get("/api/wallet/entries/").data["results"]
    assert [(line["account"], line["amount"]) for line in host_lines] == [("earnings", 5)]


def test_room_detail_and_unknown_room(api_client, room):
    response = api_client.get(f"/api/rooms/{room.room_id}/")
    assert response.status_code == 200
    assert response.data["room_id"] == room.room_id
    missing = api_client.get("/api/rooms/nowhere/")
    assert missing.status_code == 404 and missing.data["code"] == 7200004


def test_events_since_oldest_first(viewer, room, rose, client_for, api_client):
    client = client_for(viewer)
    for index in range(5):
        client.post(send_url(room.room_id), {"gift_id": "rose", "msg_id": f"m{index}"}, format="json")
    response = api_client.get(f"/api/rooms/{room.room_id}/events/?since=2")
    assert response.status_code == 200
    assert [event["seq"] for event in response.data["events"]] == [3, 4, 5]
    assert [event["msg_id"] for event in response.data["events"]] == ["m2", "m3", "m4"]
    bad = api_client.get(f"/api/rooms/{room.room_id}/events/?since=abc")
    assert bad.status_code == 400 and bad.data["code"] == 7200003


def test_host_gift_wall_counts(viewer, room, rose, client_for, api_client):
    GiftFactory(gift_id="car", price=50)
    client = client_for(viewer)
    client.post(send_url(room.room_id), {"gift_id": "rose", "msg_id": "a", "num": 3}, format="json")
    client.post(send_url(room.room_id), {"gift_id": "rose", "msg_id": "b", "num": 2}, format="json")
    client.post(send_url(room.room_id), {"gift_id": "car", "msg_id": "c"}, format="json")
    response = api_client.get(f"/api/hosts/{room.host.user_id}/gifts/")
    assert response.status_code == 200
    counts = {row["gift_id"]: row["count"] for row in response.data["gifts"]}
    assert counts == {"rose": 5, "car": 1}


def test_schema_and_docs(api_client, db):
    assert api_client.get("/api/schema/").status_code == 200
    assert api_client.get("/api/docs/").status_code == 200


def test_the_docs_page_loads_swagger_ui_from_this_site_not_a_cdn(api_client, db):
    import re

    from django.contrib.staticfiles import finders

    page = api_client.get("/api/docs/").content.decode()

    assert "cdn.jsdelivr.net" not in page and "unpkg.com" not in page
    assets = re.findall(r'(?:src|href)="/static/([^"]+)"', page)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets), page
    # Every asset the page names is one this project serves (runserver, or collectstatic).
    assert all(finders.find(asset) for asset in assets), assets


def test_token_obtain(api_client, db):
    ProfileFactory(user_id="bob", password="pw-123456")
    good = api_client.post("/api/auth/token/", {"username": "bob", "password": "pw-123456"}, format="json")
    assert good.status_code == 200 and good.data["token"]
    bad = api_client.post("/api/auth/token/", {"username": "bob", "password": "nope"}, format="json")
    assert bad.status_code == 401 and bad.data["code"] == 7200001


def test_ledger_invariant_holds_after_api_traffic(viewer, room, rose, client_for):
    client = client_for(viewer)
    for index in range(3):
        client.post(send_url(room.room_id), {"gift_id": "rose", "msg_id": f"m{index}", "num": 7}, format="json")
    totals = ledger_totals()
    assert totals["sum_of_balances"] == 0 and totals["sum_of_entries"] == 0


@pytest.mark.parametrize("since", [str(10**30), "-1", "1e3", ""])
def test_events_since_out_of_range_is_a_4xx_not_a_500(api_client, room, since):
    response = api_client.get(f"/api/rooms/{room.room_id}/events/", {"since": since})
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert response.data["code"] == 7200003


def test_gift_wall_of_an_unknown_host_is_404_with_a_code(api_client, db):
    response = api_client.get("/api/hosts/nobody/gifts/")
    assert response.status_code == 404
    assert set(response.json()) == {"code", "message"}


def test_msg_id_with_a_nul_character_is_refused(viewer, room, rose, client_for):
    response = client_for(viewer).post(send_url(room.room_id), {"gift_id": "rose", "msg_id": "a\x00b"}, format="json")
    assert response.status_code == 400 and response.data["code"] == 7200003
    assert profile_balances(viewer)["coins"] == 10_000


def test_form_encoded_send_is_refused_with_a_code(viewer, room, rose, client_for):
    client = client_for(viewer)
    ok = client.post(send_url(room.room_id), {"gift_id": "rose", "msg_id": "f1"})
    unknown = client.post(send_url(room.room_id), {"gift_id": "nope", "msg_id": "f2"})
    # the API speaks JSON only: other media types are refused with a code, and nothing moves
    for response in (ok, unknown):
        assert response.status_code == 415
        assert response.json()["code"] == 7200003
    assert profile_balances(viewer)["coins"] == 10_000


def test_a_body_over_the_size_limit_is_a_4xx_with_a_code(viewer, room, rose, client_for):
    body = json.dumps({"gift_id": "rose", "msg_id": "big", "pad": "x" * (2 * 1024 * 1024)})
    response = client_for(viewer).post(send_url(room.room_id), body, content_type="application/json")
    assert 400 <= response.status_code < 500
    assert set(response.json()) == {"code", "message"}
    assert profile_balances(viewer)["coins"] == 10_000


@pytest.mark.parametrize("path", ["/api/no-such-thing/", "/api/rooms/a%00b/", "/api/rooms/" + "x" * 65 + "/"])
def test_an_api_url_that_names_nothing_is_a_coded_404(api_client, db, path):
    response = api_client.get(path)

    assert response.status_code == 404
    assert response.json() == {"code": 7200004, "message": "not found"}
