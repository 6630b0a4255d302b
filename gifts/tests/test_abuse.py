"""A viewer trying to spend, read or forge what is not theirs, or to overwhelm the API.

Each test plays the attacker with the tools a real one has (extra request fields, query
parameters, someone else's ids, a crafted cursor, websocket frames, a reused ticket, a flood,
a huge body) and asserts what the victim and the ledger would show afterwards.
"""

import base64
import json
import threading
import time
import uuid
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.db import connection
from django.test.client import FakePayload
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from gifting_site.asgi import application
from gifts.api import GiftSendThrottle
from gifts.models import FailedDelivery, GiftEvent, GiftReceipt, ServerApp
from gifts.services import GiftRequest, gift_send
from gifts.signatures import signature_compute
from gifts.tests.factories import GiftFactory, RoomFactory, started_game
from wallets.models import Account, Entry, Profile, Transfer
from wallets.selectors import ledger_totals, profile_balances
from wallets.tests.factories import ProfileFactory

ORIGIN = (b"origin", b"http://testserver")
TEN_MB = 10 * 1024 * 1024


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()  # throttle histories and websocket tickets live in the cache
    yield
    cache.clear()


@pytest.fixture
def bob(db):
    return ProfileFactory(user_id="bob", coins=10_000)


def send_url(room) -> str:
    return f"/api/rooms/{room.room_id}/gifts/"


def coins(profile) -> int:
    return profile_balances(profile)["coins"]


def records() -> tuple[int, ...]:
    return (
        Transfer.objects.count(),
        Entry.objects.count(),
        GiftEvent.objects.count(),
        GiftReceipt.objects.count(),
        FailedDelivery.objects.count(),
        Profile.objects.count(),
    )


def assert_ledger_balances() -> None:
    totals = ledger_totals()
    assert (totals["sum_of_balances"], totals["negative_user_accounts"]) == (0, 0), totals


# --- nobody can spend another viewer's coins --------------------------------------------------------


SENDER_CLAIMS = [
    {"sender": "bob"},
    {"sender_id": "bob"},
    {"user_id": "bob"},
    {"UserId": "bob"},
    {"UserInfo": {"UserId": "bob"}},
    {"sender": {"user_id": "bob"}},
    {"from": "bob", "payer": "bob", "account": "bob"},
    {"scope": "user:bob"},
]


@pytest.mark.django_db
@pytest.mark.parametrize("claim", SENDER_CLAIMS, ids=[",".join(claim) for claim in SENDER_CLAIMS])
def test_naming_another_sender_in_the_body_charges_the_token_owner(viewer, bob, room, rose, client_for, claim):
    # given alice signed in with her own token
    # when she sends a rose and names bob as the sender in every way a body could
    response = client_for(viewer).post(send_url(room), {"gift_id": "rose", "msg_id": "m1", **claim}, format="json")
    # then the claim is ignored: alice pays, bob keeps every coin, and the room sees alice
    assert response.status_code == 201, response.data
    assert response.data["event"]["sender"]["user_id"] == "alice"
    assert response.data["coins_balance"] == coins(viewer) == 10_000 - 10
    assert coins(bob) == 10_000
    assert list(GiftEvent.objects.values_list("sender__user_id", flat=True)) == ["alice"]


@pytest.mark.django_db
def test_naming_another_sender_in_the_query_or_headers_charges_the_token_owner(viewer, bob, room, rose, client_for):
    url = send_url(room) + "?" + urlencode({"user_id": "bob", "sender": "bob", "sender_id": bob.pk})
    response = client_for(viewer).post(
        url, {"gift_id": "rose", "msg_id": "m1"}, format="json", HTTP_X_USER_ID="bob", HTTP_X_FORWARDED_USER="bob"
    )
    assert response.status_code == 201, response.data
    assert response.data["event"]["sender"]["user_id"] == "alice"
    assert (coins(viewer), coins(bob)) == (10_000 - 10, 10_000)


@pytest.mark.django_db
def test_reusing_another_viewers_msg_id_is_a_new_gift_of_ones_own(viewer, bob, room, rose, client_for):
    # given bob sent a rose under msg_id m1
    bobs = client_for(bob).post(send_url(room), {"gift_id": "rose", "msg_id": "m1"}, format="json")
    assert bobs.status_code == 201
    # when alice sends under the same msg_id, once the same gift and once another
    GiftFactory(gift_id="car", price=50)
    same = client_for(viewer).post(send_url(room), {"gift_id": "rose", "msg_id": "m1"}, format="json")
    # then it is her own new gift: not bob's stored answer (his balance), not a conflict with his
    assert same.status_code == 201, same.data
    assert same.data["coins_balance"] == 10_000 - 10
    assert same.data["event"]["sender"]["user_id"] == "alice"
    assert same.data["event"]["seq"] == 2
    other = client_for(bob).post(send_url(room), {"gift_id": "car", "msg_id": "m2"}, format="json")
    mine = client_for(viewer).post(send_url(room), {"gift_id": "car", "msg_id": "m2"}, format="json")
    assert (other.status_code, mine.status_code) == (201, 201)
    # and bob paid for his own gifts only
    assert (coins(viewer), coins(bob)) == (10_000 - 60, 10_000 - 60)
    assert_ledger_balances()


@pytest.mark.django_db
def test_joining_a_game_in_another_viewers_name_joins_the_caller(viewer, bob, client_for):
    session = started_game(RoomFactory(room_id="arena"))
    response = client_for(viewer).post(
        "/api/rooms/arena/game/join/?user_id=bob", {"user_id": "bob", "profile": bob.pk}, format="json"
    )
    assert response.status_code == 200, response.data
    assert list(session.players.values_list("user_id", flat=True)) == ["alice"]


@pytest.mark.django_db
def test_a_cross_site_post_riding_on_a_session_cookie_is_refused(bob, room, rose):
    # given bob is signed in on the site (session cookie) and a foreign page makes his browser post
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(bob.login)
    before = records()
    response = browser.post(send_url(room), {"gift_id": "rose", "msg_id": "csrf"}, format="json")
    # then without the page's CSRF token nothing is sent in his name
    assert response.status_code == 403
    assert set(response.json()) == {"code", "message"}
    assert coins(bob) == 10_000
    assert records() == before


# --- nobody can read another viewer's ledger -------------------------------------------------------


@pytest.fixture
def two_histories(viewer, bob, room, rose, client_for):
    """Alice and bob have each sent gifts, so both have ledger lines of their own."""
    for sender, prefix in ((viewer, "a"), (bob, "b")):
        client = client_for(sender)
        for index in range(3):
            response = client.post(send_url(room), {"gift_id": "rose", "msg_id": f"{prefix}{index}"}, format="json")
            assert response.status_code == 201
    return {
        "alice": set(Entry.objects.filter(account__profile=viewer).values_list("id", flat=True)),
        "bob": set(Entry.objects.filter(account__profile=bob).values_list("id", flat=True)),
    }


def entry_ids(client, url: str) -> set[int]:
    response = client.get(url)
    assert response.status_code == 200, response.data
    return {line["id"] for line in response.data["results"]}


@pytest.mark.django_db
def test_no_query_parameter_shows_another_viewers_ledger(viewer, bob, client_for, two_histories):
    client = client_for(viewer)
    bob_entry = max(two_histories["bob"])
    for params in (
        {"user_id": "bob"},
        {"profile": bob.pk, "profile_id": bob.pk, "account__profile": bob.pk},
        {"account": Account.objects.get(profile=bob, kind=Account.Kind.COINS).pk},
        {"id": bob_entry, "pk": bob_entry, "entry": bob_entry},
        {"ordering": "id", "page_size": 1000, "limit": 1000},
    ):
        assert entry_ids(client, "/api/wallet/entries/?" + urlencode(params)) == two_histories["alice"], params
    # and there is no per-entry address to guess
    assert client.get(f"/api/wallet/entries/{bob_entry}/").status_code == 404


@pytest.mark.django_db
def test_a_crafted_cursor_pages_only_through_ones_own_ledger(viewer, client_for, two_histories):
    client = client_for(viewer)
    everyone = two_histories["alice"] | two_histories["bob"]
    # a cursor is base64 of a query string: aim it past everybody's newest line and before the
    # oldest, in both directions, with a huge offset too
    seen: set[int] = set()
    for position in (max(everyone) + 1, min(everyone) - 1):
        for reverse in ("0", "1"):
            for offset in ("0", "1000"):
                fields = {"p": position, "r": reverse, "o": offset}
                cursor = base64.b64encode(urlencode(fields).encode()).decode()
                response = client.get("/api/wallet/entries/", {"cursor": cursor})
                assert response.status_code in (200, 400), response.data
                if response.status_code == 200:
                    seen |= {line["id"] for line in response.data["results"]}
    # then every line any of them showed is alice's, and her own lines were reachable that way
    assert seen == two_histories["alice"]


@pytest.mark.django_db
def test_me_is_always_the_token_owner(viewer, bob, client_for):
    response = client_for(viewer).get("/api/me/", {"user_id": "bob"})
    assert (response.data["user_id"], response.data["coins"]) == ("alice", 10_000)


# --- the websocket cannot send gifts or be entered twice with one ticket ---------------------------


@pytest.fixture
def live_room(db):
    # Unique per run: the Redis channel layer may be shared with other runs.
    return RoomFactory(room_id=f"abuse-{uuid.uuid4().hex[:12]}")


async def connect(path: str) -> tuple[WebsocketCommunicator, dict]:
    communicator = WebsocketCommunicator(application, path, headers=[ORIGIN])
    connected, _ = await communicator.connect()
    assert connected
    return communicator, await communicator.receive_json_from(timeout=5)


@database_sync_to_async
def ws_ticket_for(profile) -> str:
    client = APIClient()
    client.force_authenticate(profile.login)
    response = client.post("/api/ws-ticket/")
    assert response.status_code == 201
    return response.data["ticket"]


FORGED_FRAMES = [
    {"type": "gift", "gift_id": "rose", "msg_id": "ws1", "num": 5},
    {"type": "send", "gift_id": "rose", "msg_id": "ws2", "sender": "bob"},
    {"type": "SendDanmakuGifts", "RoomId": "x", "GiftList": [{"UserInfo": {"UserId": "bob"}, "MsgId": "ws3"}]},
    {
        "type": "gifts",
        "from_seq": 1,
        "to_seq": 1,
        "events": [{"seq": 1, "msg_id": "fake", "sender": {"user_id": "bob"}, "gift": {"gift_id": "car"}, "num": 999}],
    },
    {"type": "leaderboard", "period": "live", "entries": [{"rank": 1, "user_id": "bob", "coins": 10**9}]},
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("realtime_reset")
async def test_websocket_frames_cannot_send_or_forge_gifts(viewer, bob, live_room, rose):
    # given alice on the room socket with her ticket, and another viewer watching
    alice, _ = await connect(f"/ws/rooms/{live_room.room_id}/?ticket={await ws_ticket_for(viewer)}")
    watcher, snapshot = await connect(f"/ws/rooms/{live_room.room_id}/")
    assert snapshot["seq"] == 0
    before = await database_sync_to_async(records)()
    # when alice sends frames that try to send gifts, or to pass off gift and leaderboard updates
    for frame in FORGED_FRAMES:
        await alice.send_json_to(frame)
        error = await alice.receive_json_from(timeout=5)
        assert (error["type"], error["code"]) == ("error", 7200003), frame
    # then nothing was recorded or charged
    assert await database_sync_to_async(records)() == before
    assert await database_sync_to_async(coins)(viewer) == 10_000
    assert await database_sync_to_async(coins)(bob) == 10_000
    # and the watcher's next message is the next real gift, seq 1: nothing forged was relayed before it
    await database_sync_to_async(gift_send)(
        GiftRequest(
            scope=f"user:{viewer.pk}",
            msg_id="real",
            sender=viewer,
            room=live_room,
            game_session=None,
            gift_code="rose",
            value=1,
            num=1,
        )
    )
    message = await watcher.receive_json_from(timeout=5)
    assert (message["type"], message["from_seq"]) == ("gifts", 1)
    assert [(event["msg_id"], event["sender"]["user_id"]) for event in message["events"]] == [("real", "alice")]
    await alice.disconnect()
    await watcher.disconnect()


async def refused_with_bad_ticket(communicator: WebsocketCommunicator, first: dict) -> bool:
    if first.get("type") == "snapshot":
        return False
    assert first["code"] == 4401, first
    assert (await communicator.receive_output(timeout=5))["code"] == 4401
    return True


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("realtime_reset")
async def test_a_websocket_ticket_admits_once_even_when_raced(viewer, live_room):
    ticket = await ws_ticket_for(viewer)
    path = f"/ws/rooms/{live_room.room_id}/?ticket={ticket}"
    # when the same ticket is presented by two connections at once
    first = WebsocketCommunicator(application, path, headers=[ORIGIN])
    second = WebsocketCommunicator(application, path, headers=[ORIGIN])
    await first.connect()
    await second.connect()
    answers = [await first.receive_json_from(timeout=5), await second.receive_json_from(timeout=5)]
    # then exactly one gets in
    refused = [await refused_with_bad_ticket(first, answers[0]), await refused_with_bad_ticket(second, answers[1])]
    assert sorted(refused) == [False, True], answers
    await first.disconnect()
    await second.disconnect()
    # and later, after the admitted socket left, the spent ticket still does not open the room
    again, answer = await connect(path)
    assert await refused_with_bad_ticket(again, answer)
    await again.disconnect()


# --- flooding the send endpoint -----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_flood_of_sends_is_throttled_and_only_the_allowed_gifts_are_charged(
    viewer, room, rose, client_for, monkeypatch
):
    monkeypatch.setattr(GiftSendThrottle, "THROTTLE_RATES", {"gift_send": "5/min"})
    client = client_for(viewer)
    # when alice fires 40 distinct gifts, then replays one she already sent
    statuses = [
        client.post(send_url(room), {"gift_id": "rose", "msg_id": f"flood{index}"}, format="json")
        for index in range(40)
    ]
    replay = client.post(send_url(room), {"gift_id": "rose", "msg_id": "flood0"}, format="json")
    # then the first 5 go through and every other request is a coded 429
    assert [response.status_code for response in statuses] == [201] * 5 + [429] * 35
    assert {response.json()["code"] for response in statuses[5:] + [replay]} == {7200005}
    assert replay.status_code == 429
    # and exactly 5 gifts were charged and recorded; the refused ones left no trace at all
    assert coins(viewer) == 10_000 - 5 * 10
    assert GiftEvent.objects.count() == GiftReceipt.objects.count() == 5
    assert FailedDelivery.objects.count() == 0
    assert_ledger_balances()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="concurrent writers need PostgreSQL")
def test_a_concurrent_flood_charges_no_more_than_the_allowed_gifts(room, rose, monkeypatch):
    allowed, threads, each = 5, 8, 5
    # A day-long window: a run never straddles two windows, so exactly `allowed` may pass.
    monkeypatch.setattr(GiftSendThrottle, "THROTTLE_RATES", {"gift_send": f"{allowed}/day"})
    flooder = ProfileFactory(user_id="flooder", coins=10_000)
    token = Token.objects.create(user=flooder.login).key
    start = threading.Barrier(threads)
    statuses: list[int] = []

    def fire(worker: int) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        start.wait()
        try:
            for index in range(each):
                response = client.post(
                    send_url(room), {"gift_id": "rose", "msg_id": f"w{worker}-{index}"}, format="json"
                )
                statuses.append(response.status_code)
        finally:
            connection.close()

    workers = [threading.Thread(target=fire, args=(worker,)) for worker in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(set(statuses)) == [201, 429]
    charged = GiftEvent.objects.filter(sender=flooder).count()
    assert coins(flooder) == 10_000 - 10 * charged
    assert statuses.count(201) == charged
    assert_ledger_balances()
    assert charged == allowed


# --- a huge body is refused before it is read ----------------------------------------------------------


class CountingPayload(FakePayload):
    """The request body as the server reads it, counting the bytes actually read."""

    def __init__(self, content: bytes):
        super().__init__(content)
        self.bytes_read = 0

    def read(self, size=-1):
        data = super().read(size)
        self.bytes_read += len(data)
        return data

    def readline(self, size=-1):
        data = super().readline(size)
        self.bytes_read += len(data)
        return data


def ten_mb_json(**fields) -> bytes:
    return json.dumps({**fields, "pad": "x" * TEN_MB}).encode()


def post_counting(client, url: str, body: bytes):
    payload = CountingPayload(body)
    response = client.generic("POST", url, body, content_type="application/json", **{"wsgi.input": payload})
    return response, payload.bytes_read


@pytest.mark.django_db
def test_a_10_mb_gift_is_refused_with_413_before_it_is_read(viewer, room, rose, client_for):
    before = records()
    response, bytes_read = post_counting(
        client_for(viewer), send_url(room), ten_mb_json(gift_id="rose", msg_id="huge", num=1)
    )
    assert response.status_code == 413
    assert response.json() == {"code": 7200003, "message": "request body too large"}
    assert bytes_read == 0
    assert records() == before and coins(viewer) == 10_000


@pytest.mark.django_db
def test_a_10_mb_sign_in_is_refused_with_413_before_it_is_read(viewer, api_client):
    response, bytes_read = post_counting(api_client, "/api/auth/token/", ten_mb_json(username="alice", password="x"))
    assert (response.status_code, response.json()["code"], bytes_read) == (413, 7200003, 0)


@pytest.mark.django_db
def test_a_10_mb_server_api_batch_is_refused_before_it_is_read(viewer, room, rose, api_client):
    ServerApp.objects.create(app_id="app1", name="business", secret="s3cret")
    nonce, timestamp = uuid.uuid4().hex, str(int(time.time()))
    query = urlencode(
        {
            "Action": "SendDanmakuGifts",
            "AppId": "app1",
            "SignatureNonce": nonce,
            "Timestamp": timestamp,
            "SignatureVersion": "2.0",
            "Signature": signature_compute(app_id="app1", nonce=nonce, secret="s3cret", timestamp=timestamp),
        }
    )
    before = records()
    response, bytes_read = post_counting(api_client, f"/api/v1/?{query}", ten_mb_json(RoomId=room.room_id))
    # the server API answers in ZEGO's shape: HTTP 200, the refusal in Code
    assert response.status_code == 200
    assert response.json()["Code"] == 7200003
    assert bytes_read == 0
    assert records() == before
