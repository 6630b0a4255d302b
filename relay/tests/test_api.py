"""What senders, business servers and the game vendor see of the relay over HTTP."""

import json
import time
from urllib.parse import urlencode

import pytest
from django.core.cache import cache

from gifts.models import GameSession, ServerApp
from gifts.tests.factories import MiniGameFactory, RoomFactory
from gifts.tests.test_server_api import batch, call, item, signed_url
from relay.callbacks import callback_signature
from relay.models import GameDelivery, GameReport
from relay.services import Relay
from wallets.models import Profile
from wallets.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()  # server-API nonces and rate counters
    yield
    cache.clear()


def send_rest(client, msg_id, *, value=10, num=1):
    return client.post(
        "/api/rooms/arena/gifts/", {"gift_id": "g1", "msg_id": msg_id, "value": value, "num": num}, format="json"
    )


# --- GET /api/me/sends/{msg_id}/ ------------------------------------------------------------------


def test_a_sender_follows_their_gift_from_paid_to_delivered_to_the_game(vendor, arena, client_for):
    fan = Profile.objects.get(user_id="fan1")
    client = client_for(fan)
    assert send_rest(client, "tap-1").status_code == 201

    pending = client.get("/api/me/sends/tap-1/")
    assert pending.status_code == 200
    body = pending.json()
    assert (body["result"], body["msg_id"], body["event"]["seq"], body["refunded"]) == (0, "tap-1", 1, False)
    assert body["delivery"] == {
        "status": "pending",
        "attempts": 0,
        "code": None,
        "message": "",
        "vendor_msg_id": GameDelivery.objects.get().vendor_msg_id,
        "delivered_at": None,
    }

    Relay().deliver_once()
    delivered = client.get("/api/me/sends/tap-1/").json()["delivery"]
    assert (delivered["status"], delivered["attempts"], delivered["code"]) == ("delivered", 1, 0)
    assert delivered["delivered_at"].endswith("Z")


def test_a_refused_send_reports_its_code_and_no_delivery(vendor, arena, client_for):
    client = client_for(Profile.objects.get(user_id="fan1"))
    assert send_rest(client, "too-much", num=100_000).status_code == 422

    body = client.get("/api/me/sends/too-much/").json()
    assert (body["result"], body["event"], body["coins_balance"]) == (10007, None, None)
    assert body["delivery"]["status"] == "not_relayed"


def test_a_gift_in_a_room_without_a_relayed_game_is_not_relayed(db, client_for, rose):
    RoomFactory(room_id="quiet", host=ProfileFactory(user_id="quiet-host"))
    fan = ProfileFactory(user_id="quiet-fan", coins=100)
    client = client_for(fan)
    client.post("/api/rooms/quiet/gifts/", {"gift_id": "rose", "msg_id": "q1"}, format="json")

    assert client.get("/api/me/sends/q1/").json()["delivery"]["status"] == "not_relayed"


def test_a_msg_id_the_caller_never_sent_is_404_with_10010(vendor, arena, client_for, api_client):
    client_for(Profile.objects.get(user_id="fan1")).post(
        "/api/rooms/arena/gifts/", {"gift_id": "g1", "msg_id": "mine", "value": 10}, format="json"
    )
    other = client_for(Profile.objects.get(user_id="fan2"))

    for response in (other.get("/api/me/sends/mine/"), other.get("/api/me/sends/never/")):
        assert response.status_code == 404
        assert response.json()["code"] == 10010
    assert api_client.get("/api/me/sends/mine/").status_code == 401


# --- DescribeDanmakuMsgResults ---------------------------------------------------------------------


def test_describe_danmaku_msg_results_reports_billing_and_delivery_per_msg_id(vendor, arena, client):
    ServerApp.objects.create(app_id="1000001", name="business", secret="demo-secret")
    vendor.user_results["fan2"] = (10003, "user not in game")
    sent = call(client, batch("arena", [item("s1"), item("s2", user_id="fan2"), item("s3", num=10**5)]))
    assert [row["Result"] for row in sent["Data"]["Results"]] == [0, 0, 10007]
    Relay().deliver_once()

    described = call(client, {"MsgIdList": ["s3", "s1", "s2", "unknown"]}, url=signed_url("DescribeDanmakuMsgResults"))

    assert described["Code"] == 0
    assert described["Data"]["Results"] == [
        {
            "MsgId": "s3",
            "Result": 10007,
            "Msg": described["Data"]["Results"][0]["Msg"],
            "Delivery": {"Status": "not_relayed", "Code": None, "Message": ""},
        },
        {"MsgId": "s1", "Result": 0, "Msg": "success", "Delivery": {"Status": "delivered", "Code": 0, "Message": ""}},
        {
            "MsgId": "s2",
            "Result": 0,
            "Msg": "success",
            "Delivery": {"Status": "failed", "Code": 10003, "Message": "user not in game"},
        },
        {
            "MsgId": "unknown",
            "Result": 10010,
            "Msg": "MsgId not found",
            "Delivery": {"Status": "not_relayed", "Code": None, "Message": ""},
        },
    ]


@pytest.mark.parametrize(
    "body",
    [{}, {"MsgIdList": []}, {"MsgIdList": "s1"}, {"MsgIdList": [1]}, {"MsgIdList": ["x"] * 101}],
    ids=["missing", "empty", "not a list", "not strings", "over 100"],
)
def test_describe_refuses_a_malformed_msg_id_list_with_7200003(db, client, body):
    ServerApp.objects.create(app_id="1000001", name="business", secret="demo-secret")
    answered = call(client, body, url=signed_url("DescribeDanmakuMsgResults"))
    assert answered["Code"] == 7200003 and "MsgIdList" in answered["Message"]


def test_describe_only_answers_for_the_calling_apps_own_msg_ids(vendor, arena, client):
    ServerApp.objects.create(app_id="1000001", name="business", secret="demo-secret")
    ServerApp.objects.create(app_id="2000002", name="other", secret="other-secret")
    call(client, batch("arena", [item("shared-id")]))

    answered = call(
        client,
        {"MsgIdList": ["shared-id"]},
        url=signed_url("DescribeDanmakuMsgResults", app_id="2000002", secret="other-secret"),
    )
    assert answered["Data"]["Results"][0]["Result"] == 10010


# --- the game-report callback ----------------------------------------------------------------------

CALLBACK_SECRET = "callback-secret"


@pytest.fixture
def callback_secret(settings):
    settings.GAME_VENDOR_CALLBACK_SECRET = CALLBACK_SECRET


def report(client, body, *, secret=CALLBACK_SECRET, offset=0, nonce="n0nce", signature=None):
    timestamp = str(int(time.time()) + offset)
    signature = signature or callback_signature(secret=secret, timestamp=timestamp, nonce=nonce)
    query = urlencode({"signature": signature, "timestamp": timestamp, "nonce": nonce})
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(f"/api/v1/callbacks/minigame/?{query}", raw, content_type="application/json")


def game_report(report_id, report_type, room_id="arena", mini_game_id="TinyLoveWar", **extra):
    return {"ReportId": report_id, "ReportType": report_type, "RoomId": room_id, "MiniGameId": mini_game_id, **extra}


def test_game_reports_start_and_settle_the_rooms_game_once_per_report_id(callback_secret, client):
    room = RoomFactory(room_id="arena", host=ProfileFactory(user_id="anchor"))
    MiniGameFactory()

    started = report(client, game_report("r1", 1, RoundId=7))
    assert (started.status_code, started.json()) == (200, {"Code": 0, "Message": "succeed"})
    session = GameSession.objects.get(room=room)
    assert session.state == "started"

    again = report(client, game_report("r1", 1, RoundId=7), nonce="other")
    assert again.json()["Code"] == 0
    assert GameSession.objects.filter(room=room).count() == 1

    settlement = {"Ranks": [{"UserId": "fan1", "Score": 120}]}
    report(client, game_report("r2", 2, RoundId=7, Data=settlement))
    session.refresh_from_db()
    assert session.state == "ended"
    stored = GameReport.objects.get(report_id="r2")
    assert (stored.data, stored.round_id, stored.session_id) == (settlement, "7", session.pk)

    report(client, game_report("r1", 1))  # a late copy of the first report restarts nothing
    assert list(GameSession.objects.filter(room=room).values_list("state", flat=True)) == ["ended"]


def test_a_start_report_for_another_game_ends_the_one_running(callback_secret, client, arena):
    MiniGameFactory(mini_game_id="DragonRun")

    report(client, game_report("d1", 1, mini_game_id="DragonRun"))

    sessions = dict(GameSession.objects.filter(room=arena.room).values_list("mini_game__mini_game_id", "state"))
    assert sessions == {"TinyLoveWar": "ended", "DragonRun": "started"}


@pytest.mark.parametrize(
    "signing",
    [
        {"secret": "wrong-secret"},
        {"offset": -700},
        {"offset": 700},
        {"signature": "0" * 40},
        {"signature": "not-hex"},
        {"nonce": ""},
    ],
    ids=["bad secret", "stale", "future", "wrong signature", "malformed signature", "no nonce"],
)
def test_a_callback_not_signed_by_the_vendor_just_now_is_401_and_changes_nothing(callback_secret, client, signing):
    RoomFactory(room_id="arena")
    MiniGameFactory()

    response = report(client, game_report("r1", 1), **signing)

    assert response.status_code == 401 and response.json()["Code"] == 7200001
    assert not GameReport.objects.exists() and not GameSession.objects.exists()


def test_without_a_callback_secret_every_callback_is_refused(client, settings):
    settings.GAME_VENDOR_CALLBACK_SECRET = ""
    assert report(client, game_report("r1", 1), secret="").status_code == 401


def test_a_report_for_an_unknown_room_or_game_is_answered_7200004(callback_secret, client):
    RoomFactory(room_id="arena")
    for body in (game_report("r1", 1, room_id="nowhere"), game_report("r2", 1, mini_game_id="NoSuchGame")):
        response = report(client, body)
        assert (response.status_code, response.json()["Code"]) == (200, 7200004)
    assert not GameReport.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        {"ReportType": 1, "RoomId": "arena", "MiniGameId": "TinyLoveWar"},
        game_report("r1", 3),
        game_report("r1", True),
        game_report("", 1),
        game_report("r1", 1, RoundId={"a": 1}),
    ],
    ids=["not json", "not an object", "no ReportId", "unknown type", "bool type", "empty id", "RoundId object"],
)
def test_a_malformed_report_is_400_with_7200003(callback_secret, client, body):
    RoomFactory(room_id="arena")
    MiniGameFactory()
    response = report(client, body)
    assert (response.status_code, response.json()["Code"]) == (400, 7200003)
