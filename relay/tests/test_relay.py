"""The relay against a real local HTTP server that behaves as ZEGO's SendDanmakuGifts does."""

import json
import socket

import pytest
from django.core.management import call_command
from django.utils import timezone

from gifts.models import FailedDelivery
from gifts.results import Result
from gifts.tests.factories import GiftFactory, MiniGameFactory, RoomFactory, started_game
from relay.models import GameDelivery, RelayHealth, RelayRoom
from relay.services import Relay, delivery_redeliver, relay_resume
from relay.tests.conftest import DEFAULT_AVATAR
from relay.tests.fake_vendor import MSG_ID
from wallets.models import Profile
from wallets.selectors import profile_balances
from wallets.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


def deliveries():
    return list(GameDelivery.objects.order_by("seq"))


def make_due():
    """Let the time a room waits between calls (merge window or backoff) pass at once."""
    RelayRoom.objects.update(next_call_at=None)


# --- the outbox row, written with the gift ----------------------------------------------------------


def test_a_paid_gift_of_a_relayed_game_is_owed_to_the_game_from_its_commit(send):
    outcomes = send(("fan1", 10, 2), ("fan2", 66, 1), ("fan2", 66, 1_000))

    assert [outcome.result for outcome in outcomes] == [Result.SUCCESS, Result.SUCCESS, Result.INSUFFICIENT_BALANCE]
    rows = deliveries()
    assert [(row.seq, row.status, row.attempts) for row in rows] == [(1, "pending", 0), (2, "pending", 0)]
    assert all(MSG_ID.fullmatch(row.vendor_msg_id) for row in rows)
    assert rows[0].event.msg_id == outcomes[0].msg_id
    assert rows[0].item == {
        "UserInfo": {"UserId": "fan1", "Nickname": "Fan fan1", "Avatar": "", "Sex": 0},
        "GiftInfo": {"GiftId": "g1", "Value": 10, "Num": 2},
        "Timestamp": int(rows[0].event.created_at.timestamp() * 1000),
        "ReceiverId": "anchor",
    }


def test_gifts_to_a_game_that_is_not_relayed_owe_the_game_nothing(db):
    room = RoomFactory(host=ProfileFactory(user_id="host-plain"))
    GiftFactory(gift_id="rose", price=1)
    started_game(room, MiniGameFactory(mini_game_id="LocalOnly"))
    from gifts.services import game_join, gifts_send, room_for_gifts
    from gifts.tests.factories import gift_request

    fan = ProfileFactory(user_id="fan-plain", coins=100)
    game_join(room=room, profile=fan)
    from gifts.tests.factories import ValueTierFactory

    ValueTierFactory(mini_game=room.game_sessions.get().mini_game, gift=GiftFactory(gift_id="rose"), value=1)
    room, session = room_for_gifts(room.room_id)
    [outcome] = gifts_send([gift_request(fan, room, "p1", session=session)])

    assert outcome.ok
    assert not GameDelivery.objects.exists()


# --- merging, order, rate ---------------------------------------------------------------------------


def test_a_rooms_gifts_reach_the_game_merged_into_one_signed_call_in_seq_order(vendor, send):
    send(("fan1", 10, 1), ("fan2", 66, 1))
    send(("fan1", 10, 3))
    send(("fan2", 10, 1), ("fan1", 66, 2))

    calls = Relay().deliver_once()

    assert calls == 1 and len(vendor.calls) == 1
    call = vendor.calls[0]
    assert (call.room_id, call.mini_game_id, call.answered_code) == ("arena", "TinyLoveWar", 0)
    rows = deliveries()
    assert [item["MsgId"] for item in call.gift_list] == [row.vendor_msg_id for row in rows]
    assert [item["GiftInfo"]["Num"] for item in call.gift_list] == [1, 1, 3, 1, 2]
    assert {row.status for row in rows} == {"delivered"}
    assert all(row.attempts == 1 and row.code == 0 and row.delivered_at and row.request_id for row in rows)
    assert RelayHealth.objects.get().last_success_at is not None


def test_a_backlog_goes_out_in_batches_in_order_one_call_per_merge_window(vendor, send, settings):
    settings.GAME_VENDOR_BATCH = 2
    settings.GAME_VENDOR_MERGE_MS = 100
    send(*[("fan1", 10, 1)] * 5)

    assert Relay().deliver_once() == 3

    sent = [item["MsgId"] for call in vendor.calls for item in call.gift_list]
    assert [len(call.gift_list) for call in vendor.calls] == [2, 2, 1]
    assert sent == [row.vendor_msg_id for row in deliveries()]
    gaps = [later.started - earlier.started for earlier, later in zip(vendor.calls, vendor.calls[1:], strict=False)]
    # The relay waits a whole merge window between a room's calls (a little jitter on the fake's clock).
    assert min(gaps) >= 0.09


def test_nothing_is_sent_before_it_commits_and_a_quiet_room_costs_no_call(vendor, send):
    assert Relay().deliver_once() == 0
    assert vendor.calls == []


# --- the vendor did not take the call: retry with the same MsgIds -----------------------------------

BAD_ANSWERS = {
    "HTTP 503": {"status": 503},
    "HTML error page": {"status": 502, "raw": b"<html><body>Bad Gateway</body></html>"},
    "truncated JSON": {"raw": b'{"Code": 0, "Message": "succ'},
    "JSON that is not an object": {"raw": b'[{"Code": 0}]'},
    "garbage bytes": {"raw": b"\xff\xfe\x00garbage"},
    "no Code": {"raw": b'{"Message": "ok", "Data": {"Results": []}}'},
    "Code as a string": {"raw": b'{"Code": "0", "Message": "ok"}'},
    "Code 1 (busy)": {"code": 1},
    "Code 7 (internal)": {"code": 7},
    "Code 7202000": {"code": 7202000},
    "Code 7210000": {"code": 7210000},
    "an unknown Code": {"code": 4242},
    "Code 0 without Data": {"raw": b'{"Code": 0, "Message": "succeed", "RequestId": "r1"}'},
    "Code 0 with Results not a list": {"raw": b'{"Code": 0, "Data": {"Results": {"MsgId": "x"}}}'},
    "Code 0 with malformed Results": {"raw": b'{"Code": 0, "Data": {"Results": [1, null, {"MsgId": 5}]}}'},
    "deeply nested JSON": {"raw": b"[" * 100_000},
    "a Code too large to be one": {"raw": b'{"Code": 99999999999999999999999, "Message": "x"}'},
    "a negative Code": {"raw": b'{"Code": -1, "Message": "x"}'},
    "Results with out-of-range numbers": {
        "raw": b'{"Code": 0, "Data": {"Results": [{"MsgId": "gs1-x", "Result": -5}, {"Result": 1e400}]}}'
    },
}


@pytest.mark.parametrize("answer", BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
def test_any_bad_answer_keeps_the_gifts_pending_and_the_retry_repeats_the_same_msg_ids(vendor, send, answer):
    send(("fan1", 10, 1), ("fan2", 66, 1))
    vendor.then(**answer)

    relay = Relay()
    assert relay.deliver_once() == 1
    rows = deliveries()
    assert [(row.status, row.attempts) for row in rows] == [("pending", 1), ("pending", 1)]
    # Backed off: not called again within the first 0.5 s (less its jitter).
    assert RelayRoom.objects.get().next_call_at > timezone.now() + timezone.timedelta(milliseconds=300)
    assert relay.deliver_once() == 0

    make_due()
    assert relay.deliver_once() == 1
    first, retry = vendor.calls
    assert retry.gift_list == first.gift_list  # same MsgIds, same content
    assert [(row.status, row.attempts) for row in deliveries()] == [("delivered", 2), ("delivered", 2)]
    assert RelayRoom.objects.get().failures == 0
    assert vendor.content_changed == []


def test_a_timeout_is_retried_with_the_same_msg_ids(vendor, send, settings):
    settings.GAME_VENDOR_TIMEOUT_S = 0.3
    send(("fan1", 10, 1))
    vendor.then(delay_s=0.6)  # the vendor takes it, but answers too late to be heard

    relay = Relay()
    relay.deliver_once()
    assert deliveries()[0].status == "pending"

    make_due()
    relay.deliver_once()
    [row] = deliveries()
    assert (row.status, row.attempts) == ("delivered", 2)
    # The vendor saw the MsgId twice and gifted once: it answered the retry with its first result.
    assert vendor.delivered_msg_ids() == [row.vendor_msg_id] and vendor.content_changed == []


def test_no_server_listening_is_retried(vendor, send, settings):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        settings.GAME_VENDOR_URL = f"http://127.0.0.1:{closed.getsockname()[1]}"
    send(("fan1", 10, 1))

    Relay().deliver_once()

    [row] = deliveries()
    assert (row.status, row.attempts, row.code) == ("pending", 1, None)
    assert "no answer" in row.message


def test_after_the_last_attempt_the_gifts_fail_with_the_last_code(vendor, send, settings):
    settings.GAME_VENDOR_MAX_ATTEMPTS = 2
    send(("fan1", 10, 1))
    vendor.then(code=7202000).then(status=503)

    relay = Relay()
    relay.deliver_once()
    make_due()
    relay.deliver_once()

    [row] = deliveries()
    assert (row.status, row.attempts, row.code) == ("failed", 2, 7210000)
    assert row.failure.source == FailedDelivery.Source.VENDOR and row.failure.code == 7210000


def test_a_transport_failure_on_the_last_attempt_fails_with_10005(vendor, send, settings):
    settings.GAME_VENDOR_MAX_ATTEMPTS = 1
    send(("fan1", 10, 1))
    vendor.then(raw=b"<html>")

    Relay().deliver_once()

    [row] = deliveries()
    assert (row.status, row.code) == ("failed", Result.DELIVERY_EXCEPTION)


# --- credentials: pause everything, lose nothing ------------------------------------------------------


@pytest.mark.parametrize("code", [7203001, 7202003, 100000004, 100000005])
def test_refused_credentials_pause_every_room_and_keep_the_gifts_pending(vendor, send, code, caplog):
    send(("fan1", 10, 1))
    vendor.then(code=code)

    relay = Relay()
    assert relay.deliver_once() == 1
    [row] = deliveries()
    assert (row.status, row.attempts) == ("pending", 0)
    health = RelayHealth.objects.get()
    assert health.pause_code == code and health.paused_until > timezone.now()
    assert any(record.levelname == "ERROR" and str(code) in record.getMessage() for record in caplog.records)

    make_due()
    assert relay.deliver_once() == 0  # paused: no call at all
    assert len(vendor.calls) == 1

    relay_resume()
    assert relay.deliver_once() == 1
    assert deliveries()[0].status == "delivered"


def test_a_wrong_secret_is_refused_by_the_vendor_and_pauses_the_relay(vendor, send, settings):
    settings.GAME_VENDOR_SERVER_SECRET = "not-the-secret"
    send(("fan1", 10, 1))

    Relay().deliver_once()

    assert vendor.calls[0].answered_code == 100000004
    assert deliveries()[0].status == "pending"
    assert RelayHealth.objects.get().paused_until is not None


def test_without_credentials_nothing_is_called_and_the_gifts_wait(vendor, send, settings):
    settings.GAME_VENDOR_APP_ID = ""
    send(("fan1", 10, 1))

    assert Relay().deliver_once() == 0
    assert vendor.calls == [] and deliveries()[0].status == "pending"


# --- the game refused: fail, queue for staff, deliver again -----------------------------------------


@pytest.mark.parametrize("code", [7202001, 7202002, 7206001, 7200004])
def test_a_game_level_refusal_fails_every_gift_of_the_call_into_the_staff_queue(vendor, send, code):
    send(("fan1", 10, 1), ("fan2", 66, 1))
    coins_after_paying = profile_balances(Profile.objects.get(user_id="fan1"))["coins"]
    vendor.then(code=code)

    Relay().deliver_once()

    rows = deliveries()
    assert {(row.status, row.code) for row in rows} == {("failed", code)}
    queued = FailedDelivery.objects.filter(source=FailedDelivery.Source.VENDOR).order_by("id")
    assert [(failed.user_code, failed.code, failed.room.room_id) for failed in queued] == [
        ("fan1", code, "arena"),
        ("fan2", code, "arena"),
    ]
    assert queued[0].raw_item["MsgId"] == rows[0].vendor_msg_id
    assert queued[0].msg_id == rows[0].event.msg_id and queued[0].request_id == rows[0].request_id
    # The gift stays paid: refunds are staff's call, not the relay's.
    assert profile_balances(Profile.objects.get(user_id="fan1"))["coins"] == coins_after_paying


def test_per_gift_results_deliver_fail_or_retry_each_gift_on_its_own(vendor, send):
    vendor.user_results["fan2"] = (10003, "user not in game")
    send(("fan1", 10, 1), ("fan2", 10, 1), ("fan1", 10, 2), ("fan1", 10, 3))
    # The third is still being processed by the vendor; the fourth is missing from Results.
    vendor.then(results={2: (10006, "processing")}, omit=1)

    relay = Relay()
    relay.deliver_once()
    assert [(row.status, row.code) for row in deliveries()] == [
        ("delivered", 0),
        ("failed", 10003),
        ("pending", 10006),
        ("pending", None),
    ]
    assert FailedDelivery.objects.get(source="vendor").message == "user not in game"

    make_due()
    relay.deliver_once()
    assert [row.status for row in deliveries()] == ["delivered", "failed", "delivered", "delivered"]
    # The retry carried only what was still owed, in seq order, with the same MsgIds.
    assert [item["MsgId"] for item in vendor.calls[1].gift_list] == [row.vendor_msg_id for row in deliveries()[2:]]
    assert vendor.content_changed == []


def test_deliver_again_sends_a_failed_gift_under_a_new_msg_id_without_charging_again(vendor, send, admin_user):
    vendor.user_results["fan1"] = (10003, "user not in game")
    send(("fan1", 10, 1))
    relay = Relay()
    relay.deliver_once()
    [failed_row] = deliveries()
    old_msg_id = failed_row.vendor_msg_id
    coins = profile_balances(Profile.objects.get(user_id="fan1"))["coins"]
    del vendor.user_results["fan1"]  # the user has joined the game since

    delivery_redeliver(delivery=failed_row, staff_user=admin_user)
    make_due()
    relay.deliver_once()

    [row] = deliveries()
    assert row.status == "delivered" and row.vendor_msg_id != old_msg_id and MSG_ID.fullmatch(row.vendor_msg_id)
    assert vendor.calls[-1].gift_list[0]["MsgId"] == row.vendor_msg_id
    assert profile_balances(Profile.objects.get(user_id="fan1"))["coins"] == coins
    assert FailedDelivery.objects.get(source="vendor").resolved_by == admin_user


def test_a_room_that_changed_games_sends_each_games_gifts_in_a_call_of_its_own(vendor, send, arena):
    from gifts.services import game_join, game_session_end, gifts_send, room_for_gifts
    from gifts.tests.factories import ValueTierFactory, gift_request

    send(("fan1", 10, 1))
    game_session_end(session=arena)
    other = MiniGameFactory(mini_game_id="DragonRun", relay=True)
    ValueTierFactory(mini_game=other, gift=GiftFactory(gift_id="g1"), value=10)
    started_game(arena.room, other)
    fan = Profile.objects.get(user_id="fan1")
    room, session = room_for_gifts("arena")
    game_join(room=room, profile=fan)
    gifts_send([gift_request(fan, room, "dragon-1", gift_code="g1", value=10, session=session)])

    assert Relay().deliver_once() == 2
    assert [(call.mini_game_id, len(call.gift_list)) for call in vendor.calls] == [("TinyLoveWar", 1), ("DragonRun", 1)]


# --- the command ------------------------------------------------------------------------------------


def test_relay_game_gifts_once_delivers_what_is_due(vendor, send):
    send(("fan1", 10, 1), ("fan2", 10, 1))
    out = open("/dev/null", "w")  # noqa: SIM115

    call_command("relay_game_gifts", "--once", stdout=out)

    assert {row.status for row in deliveries()} == {"delivered"}
    assert json.loads(json.dumps(vendor.calls[0].gift_list))[0]["UserInfo"]["UserId"] == "fan1"


def test_check_warns_when_a_relayed_game_has_no_credentials(arena, settings):
    from django.core import checks

    settings.GAME_VENDOR_APP_ID = ""
    assert [message.id for message in checks.run_checks()] == ["relay.W001"]
    settings.GAME_VENDOR_APP_ID, settings.GAME_VENDOR_SERVER_SECRET = "1", "s"
    assert [message.id for message in checks.run_checks()] == ["relay.W002"]  # no default avatar
    settings.GAME_VENDOR_DEFAULT_AVATAR = "https://cdn.example.test/default.png"
    assert checks.run_checks() == []


def test_a_gift_the_vendor_could_never_take_fails_at_once_and_does_not_hold_up_the_room(vendor, send, arena):
    from gifts.services import game_join

    game_join(room=arena.room, profile=ProfileFactory(user_id="fan.with@dot", coins=100))
    send(("fan1", 10, 1), ("fan.with@dot", 10, 1), ("fan2", 10, 1))

    assert Relay().deliver_once() == 1

    assert [(row.status, row.code) for row in deliveries()] == [("delivered", 0), ("failed", 10003), ("delivered", 0)]
    assert [item["UserInfo"]["UserId"] for item in vendor.calls[0].gift_list] == ["fan1", "fan2"]
    failed = FailedDelivery.objects.get(source="vendor")
    assert failed.user_code == "fan.with@dot" and "UserId" in failed.message


def test_people_without_an_avatar_reach_the_game_with_the_default_one(vendor, send, arena):
    from gifts.services import game_join

    own = "https://cdn.example.test/fan3.png"
    game_join(room=arena.room, profile=ProfileFactory(user_id="fan3", avatar=own, coins=100))
    send(("fan1", 10, 1), ("fan2", 10, 1), ("fan3", 10, 1))

    assert Relay().deliver_once() == 1

    assert {row.status for row in deliveries()} == {"delivered"}
    sent = {item["UserInfo"]["UserId"]: item["UserInfo"]["Avatar"] for call in vendor.calls for item in call.gift_list}
    assert sent == {"fan1": DEFAULT_AVATAR, "fan2": DEFAULT_AVATAR, "fan3": own}


def test_without_a_default_avatar_such_a_gift_fails_at_once_and_delivers_once_one_is_set(vendor, send, settings):
    settings.GAME_VENDOR_DEFAULT_AVATAR = ""
    send(("fan1", 10, 1))

    assert Relay().deliver_once() == 1  # the room is looked at; the gift fails without a call

    assert vendor.calls == []
    [row] = deliveries()
    assert (row.status, row.code) == ("failed", 10003)
    failed = FailedDelivery.objects.get(source="vendor")
    assert "GAME_VENDOR_DEFAULT_AVATAR" in failed.message

    settings.GAME_VENDOR_DEFAULT_AVATAR = DEFAULT_AVATAR
    delivery_redeliver(delivery=row, staff_user=None)
    make_due()
    Relay().deliver_once()

    [row] = deliveries()
    assert row.status == "delivered"
    assert vendor.calls[0].gift_list[0]["UserInfo"]["Avatar"] == DEFAULT_AVATAR


def test_a_failed_call_backs_off_more_each_time_and_resets_after_a_success(vendor, send):
    send(("fan1", 10, 1))
    vendor.then(status=503).then(status=503)
    relay = Relay()

    relay.deliver_once()
    assert RelayRoom.objects.get().failures == 1
    make_due()
    relay.deliver_once()
    state = RelayRoom.objects.get()
    # The second backoff is about 1 s (0.75-1.25 with jitter).
    assert state.failures == 2 and state.next_call_at > timezone.now() + timezone.timedelta(milliseconds=700)
    make_due()
    relay.deliver_once()
    assert RelayRoom.objects.get().failures == 0 and deliveries()[0].status == "delivered"


def test_an_answer_still_dripping_in_at_the_deadline_is_given_up_and_retried(vendor, send, settings):
    settings.GAME_VENDOR_TIMEOUT_S = 0.3
    send(("fan1", 10, 1))
    vendor.then(drip_s=2.0)  # every read gets bytes before the read timeout, the whole takes 2 s

    Relay().deliver_once()

    [row] = deliveries()
    assert (row.status, row.attempts) == ("pending", 1) and "no whole answer" in row.message


def test_still_processing_is_asked_again_and_never_failed_for_attempts(vendor, send, settings):
    settings.GAME_VENDOR_MAX_ATTEMPTS = 1
    send(("fan1", 10, 1))
    vendor.then(results={0: (10006, "processing")}).then(results={0: (10006, "processing")})
    relay = Relay()

    for _ in range(2):
        relay.deliver_once()
        [row] = deliveries()
        assert (row.status, row.code) == ("pending", 10006)
        # The vendor answered: a short pause for the room, not a growing backoff.
        assert RelayRoom.objects.get().failures == 0
        make_due()
    relay.deliver_once()
    assert deliveries()[0].status == "delivered"


def test_vendor_text_with_control_characters_is_stored_cleanly(vendor, send):
    send(("fan1", 10, 1))
    vendor.then(raw=b'{"Code": 7206001, "Message": "not\\u0000started\\n", "RequestId": "r\\u00001"}')

    Relay().deliver_once()

    [row] = deliveries()
    assert (row.status, row.code, row.message, row.request_id) == ("failed", 7206001, "not started ", "r 1")


def test_a_late_answer_never_touches_a_gift_staff_queued_again_meanwhile(vendor, send, admin_user):
    """A relay whose claim lapsed mid-call answers after the gift failed and was queued again."""
    from relay.vendor import AnswerKind, CallAnswer

    vendor.user_results["fan1"] = (10003, "user not in game")
    send(("fan1", 10, 1))
    relay = Relay()
    relay.deliver_once()
    stale_batch = list(GameDelivery.objects.all())
    delivery_redeliver(delivery=stale_batch[0], staff_user=admin_user)

    late = CallAnswer(AnswerKind.RESULTS, 0, "succeed", "late", results={stale_batch[0].vendor_msg_id: (10003, "x")})
    relay._answer_record(stale_batch[0].room_id, stale_batch, late)

    [row] = deliveries()
    assert (row.status, row.attempts) == ("pending", 0)
    assert FailedDelivery.objects.filter(source="vendor").count() == 1


def test_each_relay_call_is_one_line_with_room_items_attempt_code_and_milliseconds(vendor, send, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="relay.services")
    send(("fan1", 10, 1), ("fan2", 10, 1))
    vendor.then(code=7210000)

    relay = Relay()
    relay.deliver_once()
    make_due()
    relay.deliver_once()

    calls = [record.fields for record in caplog.records if getattr(record, "fields", {}).get("event") == "relay_call"]
    assert [(call["room"], call["items"], call["attempt"], call["answer"], call["code"]) for call in calls] == [
        ("arena", 2, 1, "retry", 7210000),
        ("arena", 2, 2, "results", 0),
    ]
    assert all(isinstance(call["ms"], int) and call["vendor_request_id"] for call in calls)
