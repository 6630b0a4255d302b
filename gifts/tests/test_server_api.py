"""The server API as a business server written against ZEGO's SendDanmakuGifts sees it."""

import hashlib
import itertools
import json
import time
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command

from gifts.models import FailedDelivery, GiftEvent, GiftReceipt, ServerApp
from gifts.services import game_join, game_session_end, game_session_open, room_go_off_air
from gifts.tests.factories import GiftFactory, MiniGameFactory, RoomFactory, ValueTierFactory, started_game
from wallets.models import Entry, Profile, Transfer
from wallets.selectors import ledger_totals, profile_balances
from wallets.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db

APP_ID, SECRET = "1000001", "demo-secret"
_nonces = itertools.count()


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()  # nonces and rate-limit counters live in the cache
    yield
    cache.clear()


@pytest.fixture
def app(db):
    return ServerApp.objects.create(app_id=APP_ID, name="business", secret=SECRET)


def signed_url(
    action="SendDanmakuGifts", *, app_id=APP_ID, secret=SECRET, nonce=None, timestamp=None, **overrides
) -> str:
    nonce = nonce or f"nonce{next(_nonces)}x{time.monotonic_ns()}"
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hashlib.md5(f"{app_id}{nonce}{secret}{timestamp}".encode()).hexdigest()
    params = {
        "Action": action,
        "AppId": app_id,
        "SignatureNonce": nonce,
        "Timestamp": timestamp,
        "SignatureVersion": "2.0",
        "Signature": signature,
    }
    params.update(overrides)
    return "/api/v1/?" + urlencode({key: value for key, value in params.items() if value is not None})


def call(client, body, url=None, **sign):
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    response = client.post(url or signed_url(**sign), raw, content_type="application/json")
    assert response.status_code == 200, response.content
    data = response.json()
    assert isinstance(data["RequestId"], str) and data["RequestId"]
    return data


def item(msg_id, user_id="fan1", gift_id="g1", value=10, num=1, **extra):
    return {
        "UserInfo": {"UserId": user_id, "Nickname": f"Nick {user_id}", "Avatar": "https://cdn.example/a.png", "Sex": 1},
        "GiftInfo": {"GiftId": gift_id, "Value": value, "Num": num},
        "Timestamp": 1_700_000_000_000,
        "MsgId": msg_id,
        **extra,
    }


def batch(room_id, items, mini_game_id="TinyLoveWar"):
    body = {"RoomId": room_id, "GiftList": items}
    if mini_game_id is not None:
        body["MiniGameId"] = mini_game_id
    return body


def results(data):
    return [(row["Result"], row["MsgId"]) for row in data["Data"]["Results"]]


def state():
    """Everything a request-level refusal must leave untouched."""
    return (
        Profile.objects.count(),
        FailedDelivery.objects.count(),
        GiftReceipt.objects.count(),
        GiftEvent.objects.count(),
        Entry.objects.count(),
    )


@pytest.fixture
def arena(db):
    """A live room with a started TinyLoveWar (g1: 10 -> soldier, 66 -> general) and two joined fans."""
    room = RoomFactory(room_id="arena", host=ProfileFactory(user_id="anchor"))
    g1 = GiftFactory(gift_id="g1", price=1)
    game = MiniGameFactory()
    ValueTierFactory(mini_game=game, gift=g1, value=10, effect="soldier")
    ValueTierFactory(mini_game=game, gift=g1, value=66, effect="general")
    session = started_game(room, game)
    for user_id in ("fan1", "fan2"):
        game_join(room=room, profile=ProfileFactory(user_id=user_id, coins=1_000))
    return session


# --- the seed's own example ---------------------------------------------------------------------


def test_seed_example_body_with_an_untiered_value_answers_10004_and_is_queued(client):
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    body = {
        "RoomId": "room123",
        "MiniGameId": "TinyLoveWar",
        "GiftList": [
            {
                "UserInfo": {"UserId": "user1", "Nickname": "test1", "Avatar": "http://", "Sex": 1},
                "GiftInfo": {"GiftId": "g1", "Value": 5, "Num": 2},
                "Timestamp": 12312312,
                "ReceiverId": "anchor111",
                "MsgId": "445623452643416236",
            }
        ],
    }
    coins_before = profile_balances(Profile.objects.get(user_id="user1"))["coins"]

    data = call(client, body)

    assert (data["Code"], data["Message"]) == (0, "succeed")
    [row] = data["Data"]["Results"]
    assert (row["Result"], row["MsgId"]) == (10004, "445623452643416236")
    assert "10" in row["Msg"] and "66" in row["Msg"]  # the valid tiers are named
    failed = FailedDelivery.objects.get(msg_id="445623452643416236")
    assert (failed.code, failed.source, failed.request_id) == (10004, "server", data["RequestId"])
    assert (failed.app.app_id, failed.room.room_id, failed.mini_game_code) == ("1000001", "room123", "TinyLoveWar")
    assert (failed.user_code, failed.gift_code, failed.value, failed.num) == ("user1", "g1", 5, 2)
    assert failed.raw_item == body["GiftList"][0]
    assert profile_balances(Profile.objects.get(user_id="user1"))["coins"] == coins_before


# --- batches ------------------------------------------------------------------------------------


def test_mixed_batch_answers_in_order_and_charges_only_the_valid_gifts(client, app, arena):
    fan1, fan2 = Profile.objects.get(user_id="fan1"), Profile.objects.get(user_id="fan2")
    body = batch(
        "arena", [item("a", "fan1", value=10, num=2), item("b", "fan1", value=11), item("c", "fan2", value=66)]
    )

    data = call(client, body)

    assert data["Code"] == 0
    assert results(data) == [(0, "a"), (10004, "b"), (0, "c")]
    assert [row["Msg"] for row in data["Data"]["Results"]][0] == "success"
    assert profile_balances(fan1)["coins"] == 1_000 - 20
    assert profile_balances(fan2)["coins"] == 1_000 - 66
    assert profile_balances(arena.room.host)["earnings"] == 10 + 33
    events = GiftEvent.objects.order_by("seq")
    assert [(e.msg_id, e.effect, e.count) for e in events] == [("a", "soldier", 20), ("c", "general", 66)]
    assert list(FailedDelivery.objects.values_list("msg_id", "code")) == [("b", 10004)]

    # the business server retries the whole batch: same answers, nothing moves
    before = (profile_balances(fan1), profile_balances(fan2), Entry.objects.count(), GiftEvent.objects.count())
    again = call(client, body)
    assert [(r["Result"], r["Msg"], r["MsgId"]) for r in again["Data"]["Results"]] == [
        (r["Result"], r["Msg"], r["MsgId"]) for r in data["Data"]["Results"]
    ]
    assert (profile_balances(fan1), profile_balances(fan2), Entry.objects.count(), GiftEvent.objects.count()) == before
    assert ledger_totals()["sum_of_balances"] == 0


def test_per_gift_codes(client, app, arena):
    ProfileFactory(user_id="lurker", coins=1_000)  # has coins but never joined the game
    body = batch(
        "arena",
        [
            item("ok", "fan1"),
            item("not-joined", "lurker"),
            item("wrong-receiver", "fan2", ReceiverId="someone-else"),
            item("unknown-gift", "fan1", gift_id="nope"),
            item("too-poor", "fan2", value=66, num=100),
            item("right-receiver", "fan2", ReceiverId="anchor"),
        ],
    )
    data = call(client, body)
    assert results(data) == [
        (0, "ok"),
        (10003, "not-joined"),
        (10003, "wrong-receiver"),
        (10004, "unknown-gift"),
        (10007, "too-poor"),
        (0, "right-receiver"),
    ]
    msgs = {row["MsgId"]: row["Msg"] for row in data["Data"]["Results"]}
    assert "joined" in msgs["not-joined"] and "host" in msgs["wrong-receiver"] and "balance" in msgs["too-poor"]
    assert set(FailedDelivery.objects.values_list("msg_id", flat=True)) == {
        "not-joined",
        "wrong-receiver",
        "unknown-gift",
        "too-poor",
    }


def test_msg_id_reused_with_a_different_gift_is_10008_and_moves_nothing(client, app, arena):
    call(client, batch("arena", [item("m1", "fan1", num=1)]))
    fan1 = Profile.objects.get(user_id="fan1")
    before = profile_balances(fan1)

    data = call(client, batch("arena", [item("m1", "fan1", num=2), item("m1", "fan2", num=1)]))

    assert results(data) == [(10008, "m1"), (10008, "m1")]
    assert profile_balances(fan1) == before
    assert GiftEvent.objects.count() == 1


def test_the_same_msg_id_twice_in_one_batch_is_applied_once(client, app, arena):
    data = call(client, batch("arena", [item("dup", "fan1"), item("dup", "fan1")]))
    assert results(data) == [(0, "dup"), (0, "dup")]
    assert GiftEvent.objects.count() == 1
    assert profile_balances(Profile.objects.get(user_id="fan1"))["coins"] == 990


def test_msg_ids_belong_to_their_app(client, app, arena):
    ServerApp.objects.create(app_id="2000002", secret="other-secret")
    first = call(client, batch("arena", [item("shared", "fan1")]))
    second = call(client, batch("arena", [item("shared", "fan1")]), app_id="2000002", secret="other-secret")
    assert results(first) == results(second) == [(0, "shared")]
    assert GiftEvent.objects.count() == 2


def test_unknown_users_are_created_with_zero_coins_and_user_info_is_refreshed(client, app, arena):
    newcomer = item("n1", "newcomer")
    newcomer["UserInfo"] = {"UserId": "newcomer", "Nickname": "Newbie", "Avatar": "https://x.example/n.png", "Sex": 2}
    data = call(client, batch("arena", [newcomer]))

    profile = Profile.objects.get(user_id="newcomer")
    assert (profile.nickname, profile.avatar, profile.sex) == ("Newbie", "https://x.example/n.png", 2)
    assert profile_balances(profile) == {"coins": 0, "earnings": 0}
    assert results(data) == [(10003, "n1")]  # a brand-new user has not joined the game yet

    # the business server's newer profile data replaces the old one; Sex may come as a string
    item2 = item("n2", "fan1")
    item2["UserInfo"] = {"UserId": "fan1", "Nickname": "Renamed", "Avatar": "http://cdn.example/r.png", "Sex": "2"}
    call(client, batch("arena", [item2]))
    fan1 = Profile.objects.get(user_id="fan1")
    assert (fan1.nickname, fan1.avatar, fan1.sex) == ("Renamed", "http://cdn.example/r.png", 2)


def test_a_gift_that_fails_unexpectedly_is_10005_and_spoils_none_of_the_others(client, app, arena):
    # a Django login named like the UserId, but with no Giftstream profile: the sender cannot be set up
    get_user_model().objects.create_user("opsadmin", password="pw-123456")
    body = batch("arena", [item("a", "fan1"), item("b", "opsadmin"), item("c", "fan2")])

    data = call(client, body)

    assert results(data) == [(0, "a"), (10005, "b"), (0, "c")]
    assert FailedDelivery.objects.get(msg_id="b").code == 10005
    assert GiftEvent.objects.count() == 2
    assert ledger_totals()["sum_of_balances"] == 0


def test_room_without_a_game_takes_plain_gifts_with_or_without_an_empty_mini_game_id(client, app, db):
    RoomFactory(room_id="chat", host=ProfileFactory(user_id="anchor2"))
    GiftFactory(gift_id="rose", price=2)
    fan = ProfileFactory(user_id="fan9", coins=100)
    omitted = call(client, batch("chat", [item("p1", "fan9", gift_id="rose", value=1, num=3)], mini_game_id=None))
    empty = call(client, batch("chat", [item("p2", "fan9", gift_id="rose", value=1)], mini_game_id=""))
    tiered = call(client, batch("chat", [item("p3", "fan9", gift_id="rose", value=10)], mini_game_id=None))
    assert results(omitted) == [(0, "p1")] and results(empty) == [(0, "p2")]
    assert results(tiered) == [(10004, "p3")]  # outside a game Value is 1
    assert profile_balances(fan)["coins"] == 100 - 8


def test_leaving_out_the_mini_game_id_does_not_skip_a_running_games_rules(client, app, arena):
    data = call(client, batch("arena", [item("x1", "fan1", value=5)], mini_game_id=None))
    assert results(data) == [(10004, "x1")]


# --- signatures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sign",
    [
        {"app_id": "9999999"},
        {"secret": "wrong-secret"},
        {"Signature": "0" * 32},
        {"Signature": "not-hex"},
        {"Signature": "é" * 32},
        {"Signature": None},
        {"AppId": None},
        {"SignatureNonce": None},
        {"Timestamp": None},
        {"Timestamp": "soon"},
        {"SignatureVersion": "1.0"},
        {"SignatureVersion": None},
    ],
    ids=lambda sign: ",".join(f"{k}={v}" for k, v in sign.items()),
)
def test_authentication_failures_are_7200001_and_record_nothing(client, app, arena, sign):
    before = state()
    data = call(client, batch("arena", [item("m1")]), **sign)
    assert data["Code"] == 7200001 and "Data" not in data
    assert state() == before


def test_an_inactive_app_cannot_call(client, app, arena):
    ServerApp.objects.filter(pk=app.pk).update(is_active=False)
    assert call(client, batch("arena", [item("m1")]))["Code"] == 7200001


def test_signature_hex_case_does_not_matter(client, app, arena):
    nonce, timestamp = "abc123", str(int(time.time()))
    signature = hashlib.md5(f"{APP_ID}{nonce}{SECRET}{timestamp}".encode()).hexdigest().upper()
    url = signed_url(nonce=nonce, timestamp=timestamp, Signature=signature)
    assert results(call(client, batch("arena", [item("m1")]), url=url)) == [(0, "m1")]


@pytest.mark.parametrize("skew", [-601, 601, -(10**6)])
def test_a_stale_or_future_timestamp_is_7200002(client, app, arena, skew):
    before = state()
    data = call(client, batch("arena", [item("m1")]), timestamp=int(time.time()) + skew)
    assert data["Code"] == 7200002
    assert state() == before


def test_a_timestamp_within_the_window_is_accepted(client, app, arena):
    data = call(client, batch("arena", [item("m1")]), timestamp=int(time.time()) - 590)
    assert results(data) == [(0, "m1")]


def test_a_replayed_nonce_is_7200002_even_with_a_new_body(client, app, arena):
    url = signed_url(nonce="once-only")
    assert results(call(client, batch("arena", [item("m1")]), url=url)) == [(0, "m1")]
    before = state()
    replay = call(client, batch("arena", [item("m2")]), url=url)
    assert replay["Code"] == 7200002
    assert state() == before
    # nonces are per app: another app may happen to pick the same one
    ServerApp.objects.create(app_id="2000002", secret="other-secret")
    other = call(client, batch("arena", [item("m3")]), app_id="2000002", secret="other-secret", nonce="once-only")
    assert results(other) == [(0, "m3")]


def test_a_refused_request_spends_its_nonce_but_its_msg_ids_go_through_when_signed_again(client, app, arena):
    url = signed_url(nonce="n-refused")
    body = batch("nowhere", [item("m1", "fan1")])
    assert call(client, body, url=url)["Code"] == 7200004
    body["RoomId"] = "arena"
    assert call(client, body, url=url)["Code"] == 7200002  # the same URL again is a replay
    assert results(call(client, body)) == [(0, "m1")]  # a freshly signed retry delivers


# --- request-level codes ------------------------------------------------------------------------


def test_unknown_or_off_air_room_is_7200004_then_the_same_msg_ids_go_through(client, app, arena):
    before = state()
    assert call(client, batch("nowhere", [item("m1", "brand-new-user")]))["Code"] == 7200004
    room_go_off_air(room=arena.room)
    assert call(client, batch("arena", [item("m1", "brand-new-user")]))["Code"] == 7200004
    assert state() == before  # not even the unknown user was created
    arena.room.is_live = False
    from gifts.services import room_go_live

    room_go_live(room=arena.room)
    assert results(call(client, batch("arena", [item("m1", "fan1")]))) == [(0, "m1")]


def test_game_not_found_not_started_and_bad_format(client, app, arena):
    before = state()
    assert call(client, batch("arena", [item("m1")], mini_game_id="OtherGame"))["Code"] == 7202001
    for bad in (123, ["TinyLoveWar"], {"id": 1}, True, "x" * 65):
        assert call(client, batch("arena", [item("m1")], mini_game_id=bad))["Code"] == 7202002
    game_session_end(session=arena)
    assert call(client, batch("arena", [item("m1")]))["Code"] == 7202001  # the game is over
    waiting = game_session_open(room=arena.room, mini_game=arena.mini_game)
    assert call(client, batch("arena", [item("m1")]))["Code"] == 7206001
    assert state() == before

    from gifts.services import game_session_start

    game_session_start(session=waiting)
    game_join(room=arena.room, profile=Profile.objects.get(user_id="fan1"))
    assert results(call(client, batch("arena", [item("m1")]))) == [(0, "m1")]


def test_more_than_the_room_rate_per_second_is_7200005(client, app, arena, settings, monkeypatch):
    settings.SERVER_API_ROOM_RATE = 3
    frozen = time.time()
    monkeypatch.setattr("gifts.server_api.time.time", lambda: frozen)
    codes = [call(client, batch("arena", [item(f"m{index}")]))["Code"] for index in range(4)]
    assert codes == [0, 0, 0, 7200005]
    assert not GiftReceipt.objects.filter(msg_id="m3").exists()
    # another room has its own budget
    RoomFactory(room_id="quiet")
    assert call(client, batch("quiet", [item("q1")], mini_game_id=None))["Code"] == 0

    # the next second the room takes calls again, and the refused MsgId goes through
    monkeypatch.setattr("gifts.server_api.time.time", lambda: frozen + 1)
    assert results(call(client, batch("arena", [item("m3")]))) == [(0, "m3")]


def test_a_room_id_no_cache_would_take_as_a_key_is_counted_without_warnings(client, app, settings, monkeypatch):
    import warnings

    from django.core.cache import CacheKeyWarning

    settings.SERVER_API_ROOM_RATE = 1
    monkeypatch.setattr("gifts.server_api.time.time", lambda: 1_700_000_000.0)
    RoomFactory(room_id="late night ☾ talk")
    body = batch("late night ☾ talk", [item("n1", gift_id="g1", value=1)], mini_game_id=None)

    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheKeyWarning)
        codes = [call(client, body)["Code"], call(client, body)["Code"]]

    assert codes[1] == 7200005


# --- malformed requests -------------------------------------------------------------------------

GOOD_ITEM = item("m1")


def with_item(**changes):
    good = json.loads(json.dumps(GOOD_ITEM))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = good
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[leaf]
        else:
            target[leaf] = value
    return {"RoomId": "arena", "MiniGameId": "TinyLoveWar", "GiftList": [good]}


MALFORMED = {
    "not json": "not json",
    "truncated json": '{"RoomId": "arena", ',
    "a list": "[1, 2]",
    "null": "null",
    "a number": "42",
    "empty object": "{}",
    "deeply nested": "[" * 50_000 + "]" * 50_000,
    "no RoomId": {"MiniGameId": "TinyLoveWar", "GiftList": [GOOD_ITEM]},
    "RoomId a number": {"RoomId": 5, "GiftList": [GOOD_ITEM]},
    "RoomId empty": {"RoomId": "", "GiftList": [GOOD_ITEM]},
    "no GiftList": {"RoomId": "arena", "MiniGameId": "TinyLoveWar"},
    "GiftList an object": {"RoomId": "arena", "MiniGameId": "TinyLoveWar", "GiftList": GOOD_ITEM},
    "GiftList a string": {"RoomId": "arena", "MiniGameId": "TinyLoveWar", "GiftList": "g1"},
    "GiftList empty": {"RoomId": "arena", "MiniGameId": "TinyLoveWar", "GiftList": []},
    "GiftList of 10,000": {
        "RoomId": "arena",
        "MiniGameId": "TinyLoveWar",
        "GiftList": [item(f"m{i}") for i in range(10_000)],
    },
    "GiftList of 101": {
        "RoomId": "arena",
        "MiniGameId": "TinyLoveWar",
        "GiftList": [item(f"m{i}") for i in range(101)],
    },
    "item not an object": {"RoomId": "arena", "MiniGameId": "TinyLoveWar", "GiftList": ["m1"]},
    "no MsgId": with_item(MsgId=KeyError),
    "MsgId a number": with_item(MsgId=445623452643416236),
    "MsgId empty": with_item(MsgId=""),
    "MsgId too long": with_item(MsgId="x" * 129),
    "MsgId with NUL": with_item(MsgId="a\x00b"),
    "no UserInfo": with_item(UserInfo=KeyError),
    "no UserId": with_item(UserInfo__UserId=KeyError),
    "UserId a number": with_item(UserInfo__UserId=42),
    "UserId with spaces": with_item(UserInfo__UserId="two words"),
    "Sex 7": with_item(UserInfo__Sex=7),
    "Avatar not http": with_item(UserInfo__Avatar="javascript:alert(1)"),
    "Nickname too long": with_item(UserInfo__Nickname="n" * 65),
    "no GiftInfo": with_item(GiftInfo=KeyError),
    "GiftInfo a list": with_item(GiftInfo=["g1", 10, 1]),
    "no GiftId": with_item(GiftInfo__GiftId=KeyError),
    "no Num": with_item(GiftInfo__Num=KeyError),
    "Num 0": with_item(GiftInfo__Num=0),
    "Num negative": with_item(GiftInfo__Num=-3),
    "Num a string": with_item(GiftInfo__Num="2"),
    "Num a float": with_item(GiftInfo__Num=2.0),
    "Num true": with_item(GiftInfo__Num=True),
    "Num giant": with_item(GiftInfo__Num=10**30),
    "Value giant": with_item(GiftInfo__Value=2**63),
    "Value zero": with_item(GiftInfo__Value=0),
    "Timestamp a string": with_item(Timestamp="yesterday"),
    "ReceiverId a number": with_item(ReceiverId=111),
    "NUL in an unknown field": with_item(Extra="x\x00y"),
    "lone surrogate": '{"RoomId": "arena", "MiniGameId": "TinyLoveWar", "GiftList": [{"MsgId": "\\ud800"}]}',
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_bodies_are_7200003_and_change_nothing(client, app, arena, body):
    before = state()
    data = call(client, body)
    assert data["Code"] == 7200003, data
    assert isinstance(data["Message"], str) and ":" in data["Message"]  # names the field and the reason
    assert state() == before


def test_the_message_names_the_item_and_field(client, app, arena):
    body = batch("arena", [item("m1"), item("m2", num=0)])
    assert call(client, body)["Message"].startswith("GiftList[1].GiftInfo.Num:")


def test_other_requests_still_get_a_zego_shaped_answer(client, app, arena):
    unknown_action = call(client, batch("arena", [item("m1")]), action="DescribeEverything")
    assert unknown_action["Code"] == 7200003 and "Action" in unknown_action["Message"]
    no_action = call(client, batch("arena", [item("m1")]), action=None)
    assert no_action["Code"] == 7200003

    form = client.post(signed_url(), {"RoomId": "arena"})
    assert form.status_code == 200 and form.json()["Code"] == 7200003

    too_big = json.dumps({**batch("arena", [item("m1")]), "pad": "x" * (2 * 1024 * 1024)})
    response = client.post(signed_url(), too_big, content_type="application/json")
    assert response.status_code == 200 and response.json()["Code"] == 7200003

    for method in (client.get, client.options, client.put):
        other = method(signed_url())
        assert other.status_code == 200 and other.json()["Code"] == 7200003 and other.json()["RequestId"]
    assert GiftEvent.objects.count() == 0


# --- TopUp --------------------------------------------------------------------------------------


def test_top_up_credits_coins_once_per_reference(client, app, db):
    body = {"UserId": "buyer", "Amount": 500, "Reference": "pay-1"}
    first = call(client, body, action="TopUp")
    assert first == {"Code": 0, "Message": "succeed", "RequestId": first["RequestId"], "Data": first["Data"]}
    assert first["Data"] == {"UserId": "buyer", "Balance": 500}
    again = call(client, body, action="TopUp")
    assert again["Data"] == {"UserId": "buyer", "Balance": 500}
    more = call(client, {**body, "Reference": "pay-2", "Amount": 25}, action="TopUp")
    assert more["Data"]["Balance"] == 525
    assert Transfer.objects.filter(kind=Transfer.Kind.TOP_UP).count() == 2
    assert ledger_totals()["sum_of_balances"] == 0


def test_top_up_reference_reused_for_something_else_is_refused(client, app, db):
    call(client, {"UserId": "buyer", "Amount": 500, "Reference": "pay-1"}, action="TopUp")
    before = state()
    for other in ({"UserId": "buyer", "Amount": 501}, {"UserId": "someone-new", "Amount": 500}):
        data = call(client, {**other, "Reference": "pay-1"}, action="TopUp")
        assert data["Code"] == 7200003 and "Reference" in data["Message"]
    assert state() == before  # nobody was created for the refused call


def test_top_up_for_a_user_id_that_names_a_staff_login_is_refused(client, app, django_user_model):
    django_user_model.objects.create_user("admin", password="pw", is_staff=True)
    before = state()
    data = call(client, {"UserId": "admin", "Amount": 100, "Reference": "pay-1"}, action="TopUp")
    assert data["Code"] == 7200003 and "staff login" in data["Message"]
    assert state() == before


def test_top_up_references_belong_to_their_app(client, app, db):
    ServerApp.objects.create(app_id="2000002", secret="other-secret")
    call(client, {"UserId": "buyer", "Amount": 100, "Reference": "pay-1"}, action="TopUp")
    data = call(
        client,
        {"UserId": "buyer", "Amount": 100, "Reference": "pay-1"},
        action="TopUp",
        app_id="2000002",
        secret="other-secret",
    )
    assert data["Data"]["Balance"] == 200


@pytest.mark.parametrize(
    "body",
    [
        {"UserId": "buyer", "Amount": 0, "Reference": "r"},
        {"UserId": "buyer", "Amount": -5, "Reference": "r"},
        {"UserId": "buyer", "Amount": "500", "Reference": "r"},
        {"UserId": "buyer", "Amount": 5.5, "Reference": "r"},
        {"UserId": "buyer", "Amount": 10**40, "Reference": "r"},
        {"UserId": "buyer", "Reference": "r"},
        {"UserId": "buyer", "Amount": 5},
        {"UserId": "buyer", "Amount": 5, "Reference": ""},
        {"Amount": 5, "Reference": "r"},
        [],
    ],
)
def test_top_up_with_a_bad_body_is_7200003(client, app, db, body):
    before = state()
    assert call(client, body, action="TopUp")["Code"] == 7200003
    assert state() == before


def test_top_up_needs_a_signature(client, app, db):
    data = call(client, {"UserId": "buyer", "Amount": 5, "Reference": "r"}, action="TopUp", secret="guess")
    assert data["Code"] == 7200001
    assert not Profile.objects.filter(user_id="buyer").exists()


# --- documentation ------------------------------------------------------------------------------


def test_the_server_api_is_in_the_openapi_schema(client, db):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    operation = schema["paths"]["/api/v1/"]["post"]
    assert {param["name"] for param in operation["parameters"]} == {
        "Action",
        "AppId",
        "SignatureNonce",
        "Timestamp",
        "SignatureVersion",
        "Signature",
    }
    components = schema["components"]["schemas"]
    assert set(components["GiftItem"]["properties"]) == {"UserInfo", "GiftInfo", "Timestamp", "ReceiverId", "MsgId"}
    assert set(components["ServerApiAnswer"]["properties"]) == {"Code", "Message", "RequestId", "Data"}


# --- RefundGift ------------------------------------------------------------------------------------


def refund(client, msg_id, user_id="fan1", reason="sent by mistake"):
    return call(client, {"MsgId": msg_id, "UserId": user_id, "Reason": reason}, action="RefundGift")


def test_refund_gift_gives_the_cost_back_once_and_answers_the_same_again(client, app, arena):
    call(client, batch("arena", [item("r1", value=66, num=2)]))  # 132 coins
    assert profile_balances(Profile.objects.get(user_id="fan1"))["coins"] == 1_000 - 132

    first = refund(client, "r1")
    again = refund(client, "r1", reason="pressed twice")

    assert first["Code"] == 0 and first["Data"] == {"MsgId": "r1", "Coins": 132, "Balance": 1_000}
    assert again["Code"] == 0 and again["Data"] == first["Data"]
    assert profile_balances(Profile.objects.get(user_id="fan1"))["coins"] == 1_000
    assert Transfer.objects.filter(kind=Transfer.Kind.REFUND).count() == 1
    assert ledger_totals()["sum_of_balances"] == 0


def test_refund_gift_of_an_unknown_msg_id_or_someone_elses_gift_is_10010(client, app, arena):
    call(client, batch("arena", [item("r1")]))
    before = state()

    for msg_id, user_id in (("nope", "fan1"), ("r1", "fan2"), ("r1", "ghost")):
        data = refund(client, msg_id, user_id=user_id)
        assert data["Code"] == 10010, data
    assert state() == before


def test_refund_gift_of_a_refused_gift_is_10010(client, app, arena):
    data = call(client, batch("arena", [item("poor", value=66, num=100)]))  # 6,600 coins: fan1 has 1,000
    assert results(data) == [(10007, "poor")]

    assert refund(client, "poor")["Code"] == 10010


def test_refund_gift_reaches_a_gift_the_user_sent_through_the_viewer_api(client, app, arena, client_for):
    fan = Profile.objects.get(user_id="fan1")
    sent = client_for(fan).post(
        "/api/rooms/arena/gifts/", {"gift_id": "g1", "msg_id": "app-tap-1", "value": 10}, format="json"
    )
    assert sent.status_code == 201, sent.content

    data = refund(client, "app-tap-1")

    assert data["Code"] == 0 and data["Data"]["Coins"] == 10 and data["Data"]["Balance"] == 1_000


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"MsgId": "r1"},
        {"MsgId": "", "UserId": "fan1"},
        {"MsgId": 5, "UserId": "fan1"},
        {"MsgId": "r1", "UserId": "fan1", "Reason": "x" * 201},
    ],
)
def test_a_malformed_refund_gift_is_7200003_and_refunds_nothing(client, app, arena, body):
    call(client, batch("arena", [item("r1")]))

    data = call(client, body, action="RefundGift")

    assert data["Code"] == 7200003, data
    assert Transfer.objects.filter(kind=Transfer.Kind.REFUND).count() == 0


# --- ReverseTopUp and Payout ------------------------------------------------------------------------


def test_reverse_top_up_takes_back_what_the_user_holds_and_the_rest_is_owed_until_a_top_up(client, app, arena):
    call(client, {"UserId": "fan42", "Amount": 500, "Reference": "pay-1"}, action="TopUp")
    game_join(room=arena.room, profile=Profile.objects.get(user_id="fan42"))
    assert results(call(client, batch("arena", [item("f1", user_id="fan42", value=66, num=5)]))) == [(0, "f1")]

    first = call(client, {"Reference": "pay-1", "Reason": "chargeback"}, action="ReverseTopUp")
    again = call(client, {"Reference": "pay-1"}, action="ReverseTopUp")

    expected = {"UserId": "fan42", "Reference": "pay-1", "Amount": 500, "Taken": 170, "Owed": 330}
    assert first["Code"] == 0 and first["Data"] == expected
    assert again["Data"] == expected
    assert results(call(client, batch("arena", [item("f2", user_id="fan42", value=10)]))) == [(10011, "f2")]
    top_up = call(client, {"UserId": "fan42", "Amount": 400, "Reference": "pay-2"}, action="TopUp")
    assert top_up["Data"] == {"UserId": "fan42", "Balance": 70}
    assert results(call(client, batch("arena", [item("f3", user_id="fan42", value=10)]))) == [(0, "f3")]
    assert ledger_totals()["sum_of_balances"] == 0


def test_reverse_top_up_of_a_reference_this_app_never_used_is_7200003(client, app, arena):
    other = ServerApp.objects.create(app_id="2000002", name="other", secret="other-secret")
    call(
        client,
        {"UserId": "fan1", "Amount": 50, "Reference": "theirs"},
        action="TopUp",
        app_id=other.app_id,
        secret=other.secret,
    )

    for reference in ("nope", "theirs"):
        data = call(client, {"Reference": reference}, action="ReverseTopUp")
        assert data["Code"] == 7200003 and "Reference" in data["Message"]
    assert not Transfer.objects.filter(kind=Transfer.Kind.CHARGEBACK).exists()


def test_payout_pays_a_host_once_per_reference_and_never_more_than_their_earnings(client, app, arena):
    call(client, batch("arena", [item("p1", value=66, num=10)]))  # 660 coins: 330 to the anchor

    paid = call(client, {"UserId": "anchor", "Amount": 300, "Reference": "bank-1"}, action="Payout")
    again = call(client, {"UserId": "anchor", "Amount": 300, "Reference": "bank-1"}, action="Payout")
    too_much = call(client, {"UserId": "anchor", "Amount": 31, "Reference": "bank-2"}, action="Payout")
    conflict = call(client, {"UserId": "anchor", "Amount": 5, "Reference": "bank-1"}, action="Payout")
    nobody = call(client, {"UserId": "ghost", "Amount": 5, "Reference": "bank-3"}, action="Payout")

    assert paid["Code"] == 0 and paid["Data"] == {
        "UserId": "anchor",
        "Reference": "bank-1",
        "Amount": 300,
        "Earnings": 30,
    }
    assert again["Data"] == paid["Data"]
    assert too_much["Code"] == 10007 and "30 coins" in too_much["Message"]
    assert conflict["Code"] == 7200003 and nobody["Code"] == 7200003
    assert profile_balances(Profile.objects.get(user_id="anchor"))["earnings"] == 30
    assert Transfer.objects.filter(kind=Transfer.Kind.PAYOUT).count() == 1


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("Payout", {"UserId": "anchor", "Amount": 0, "Reference": "b"}),
        ("Payout", {"UserId": "anchor", "Amount": "5", "Reference": "b"}),
        ("Payout", {"UserId": "anchor", "Amount": 5}),
        ("ReverseTopUp", {}),
        ("ReverseTopUp", {"Reference": ""}),
        ("ReverseTopUp", {"Reference": 7}),
    ],
)
def test_malformed_money_actions_are_7200003_and_move_nothing(client, app, arena, action, body):
    before = Transfer.objects.count()

    assert call(client, body, action=action)["Code"] == 7200003
    assert Transfer.objects.count() == before
