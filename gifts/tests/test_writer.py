"""Batches through `gifts_send` and the ledger writer: each gift decided on its own, all written together."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gifting_site.errors import RoomUnavailable
from gifts.models import FailedDelivery, GiftEvent, HostGiftCount
from gifts.results import Result
from gifts.services import COMBO_WINDOW, game_for_gifts, game_session_end, game_session_open, gifts_send, room_for_gifts
from gifts.tests.factories import GiftFactory, MiniGameFactory, RoomFactory, gift_request, started_game
from rankings.models import BOARD_PERIODS
from rankings.selectors import leaderboard_top
from wallets.models import Account
from wallets.selectors import account_balance, profile_balances
from wallets.services import platform_account
from wallets.tests.factories import ProfileFactory
from wallets.tests.ledger import assert_ledger_sound

pytestmark = pytest.mark.django_db


def seqs_of(room):
    return list(GiftEvent.objects.filter(room=room).order_by("seq").values_list("seq", "msg_id"))


def test_each_gift_is_decided_against_the_balance_the_gifts_before_it_left(room, rose):
    # given a viewer who can pay for two roses, not three
    fan = ProfileFactory(coins=25)

    outcomes = gifts_send([gift_request(fan, room, f"m{index}") for index in range(1, 4)])

    # then the first two are paid, in order, and only the third is refused
    assert [outcome.result for outcome in outcomes] == [Result.SUCCESS, Result.SUCCESS, Result.INSUFFICIENT_BALANCE]
    assert [outcome.coins_balance for outcome in outcomes[:2]] == [15, 5]
    assert outcomes[2].message == "insufficient balance: 5 coins, 10 needed"
    assert profile_balances(fan)["coins"] == 5
    assert profile_balances(room.host)["earnings"] == 10
    assert account_balance(platform_account(Account.Kind.REVENUE)) == 10
    assert seqs_of(room) == [(1, "m1"), (2, "m2")]
    assert list(FailedDelivery.objects.values_list("msg_id", "code")) == [("m3", 10007)]
    assert_ledger_sound()


def test_a_refused_gift_does_not_fail_its_neighbours(room, rose):
    fan = ProfileFactory(coins=100)
    outcomes = gifts_send(
        [
            gift_request(fan, room, "a"),
            gift_request(fan, room, "b", gift_code="nope"),
            gift_request(room.host, room, "c"),
        ]
        + [gift_request(fan, room, "d")]
    )
    assert [outcome.result for outcome in outcomes] == [
        Result.SUCCESS,
        Result.GIFT_NOT_CONFIGURED,
        Result.DELIVERY_FAILED,
        Result.SUCCESS,
    ]
    assert seqs_of(room) == [(1, "a"), (2, "d")]
    assert profile_balances(fan)["coins"] == 80


def test_a_batch_over_several_rooms_numbers_each_room_in_batch_order(rose):
    first, second = RoomFactory(), RoomFactory()
    fan = ProfileFactory(coins=1_000)
    gifts_send([gift_request(fan, first, "x0")])

    outcomes = gifts_send([gift_request(fan, [first, second][index % 2], f"m{index}") for index in range(5)])

    assert [outcome.event.seq for outcome in outcomes] == [2, 1, 3, 2, 4]
    assert seqs_of(first) == [(1, "x0"), (2, "m0"), (3, "m2"), (4, "m4")]
    assert seqs_of(second) == [(1, "m1"), (2, "m3")]
    assert first.__class__.objects.get(pk=first.pk).last_seq == 4
    assert_ledger_sound()


def test_combos_count_up_inside_a_batch_and_on_into_the_next(room, rose):
    GiftFactory(gift_id="car", price=50)
    fan, other = ProfileFactory(coins=1_000), ProfileFactory(coins=1_000)

    first = gifts_send([gift_request(fan, room, "a"), gift_request(other, room, "b"), gift_request(fan, room, "c")])
    second = gifts_send(
        [gift_request(fan, room, "d"), gift_request(fan, room, "e", gift_code="car"), gift_request(other, room, "f")]
    )

    assert [outcome.event.combo for outcome in first + second] == [1, 1, 2, 3, 1, 2]


def test_leaderboards_and_gift_walls_add_up_every_gift_of_a_batch(room, rose):
    fan, other = ProfileFactory(user_id="fan", coins=1_000), ProfileFactory(user_id="other", coins=1_000)
    gifts_send(
        [gift_request(fan, room, "a", num=2), gift_request(other, room, "b"), gift_request(fan, room, "c", num=3)]
        + [gift_request(other, room, "d", num=10)]
    )

    for period, _ in BOARD_PERIODS:
        top = leaderboard_top(room=room, period=period)
        assert [(entry["user_id"], entry["coins"]) for entry in top] == [("other", 110), ("fan", 50)]
    assert HostGiftCount.objects.get(host=room.host).count == 16


def test_the_same_msg_id_twice_in_a_batch_is_one_gift_or_a_reuse(room, rose):
    fan = ProfileFactory(coins=100)
    outcomes = gifts_send(
        [gift_request(fan, room, "m"), gift_request(fan, room, "m"), gift_request(fan, room, "m", num=2)]
    )

    assert [(outcome.result, outcome.replayed) for outcome in outcomes] == [
        (Result.SUCCESS, False),
        (Result.SUCCESS, True),
        (Result.MSG_ID_REUSED, False),
    ]
    assert outcomes[1].event.seq == outcomes[0].event.seq == 1
    assert profile_balances(fan)["coins"] == 90


def test_an_unexpected_error_is_confined_to_the_gift_that_caused_it(rose):
    healthy = RoomFactory()
    # a room whose host lost their earnings account: paying that host cannot work
    broken = RoomFactory()
    Account.objects.filter(profile=broken.host, kind=Account.Kind.EARNINGS).delete()
    fan = ProfileFactory(coins=100)

    outcomes = gifts_send(
        [gift_request(fan, healthy, "a"), gift_request(fan, broken, "b"), gift_request(fan, healthy, "c")]
    )

    assert [outcome.result for outcome in outcomes] == [Result.SUCCESS, Result.DELIVERY_EXCEPTION, Result.SUCCESS]
    assert seqs_of(healthy) == [(1, "a"), (2, "c")]
    assert seqs_of(broken) == []
    assert profile_balances(fan)["coins"] == 80
    assert FailedDelivery.objects.get(msg_id="b").code == Result.DELIVERY_EXCEPTION
    # 10005 settles nothing: once the account is back, the same MsgId goes through
    Account.objects.create(profile=broken.host, kind=Account.Kind.EARNINGS)
    assert gifts_send([gift_request(fan, broken, "b")])[0].result is Result.SUCCESS


def test_a_batch_costs_the_same_statements_however_many_gifts_it_holds(room, rose):
    def statements_for(count: int, tag: str) -> int:
        senders = [ProfileFactory(coins=100) for _ in range(count)]
        with CaptureQueriesContext(connection) as queries:
            outcomes = gifts_send(
                [gift_request(sender, room, f"{tag}-{index}") for index, sender in enumerate(senders)]
            )
        assert all(outcome.ok for outcome in outcomes)
        return len(queries)

    statements_for(1, "warm-up")  # the platform's revenue account is made on first use
    assert statements_for(50, "fifty") == statements_for(2, "two")
    assert GiftEvent.objects.filter(room=room).count() == 53


def test_a_send_reads_its_room_with_the_host_and_only_the_game_that_has_not_ended(rose):
    room = RoomFactory(room_id="arena")
    ended = started_game(room)
    game_session_end(session=ended)
    open_game = game_session_open(room=room, mini_game=MiniGameFactory(mini_game_id="Other", name="Other"))

    found, session = room_for_gifts("arena")

    assert (found.pk, found.room_id, found.is_live) == (room.pk, "arena", True)
    assert found.host.user_id == room.host.user_id
    assert (session.pk, session.state, session.mini_game.mini_game_id) == (open_game.pk, "waiting", "Other")
    # a waiting game does not apply its rules yet; an ended one never again
    assert game_for_gifts(found, session) is None


def test_a_room_without_a_game_has_none_and_an_off_air_or_unknown_room_takes_no_gifts(rose):
    RoomFactory(room_id="quiet")
    RoomFactory(room_id="dark", live=False)

    assert room_for_gifts("quiet")[1] is None
    for room_id in ("dark", "nowhere"):
        with pytest.raises(RoomUnavailable):
            room_for_gifts(room_id)


AWKWARD_MSG_IDS = ['a"b', "back\\slash", "{1,2}", "NULL", "", "it's", " spaced ", "ünï 🎁", '\\"x\\']


def test_msg_ids_of_any_text_are_stored_and_found_again_exactly(room, rose):
    # given MsgIds that array and SQL literals treat specially
    fan = ProfileFactory(coins=1_000)
    requests = [gift_request(fan, room, msg_id) for msg_id in AWKWARD_MSG_IDS]

    outcomes = gifts_send(requests)

    # then each is one gift under exactly its own MsgId, and a retry finds it without paying again
    assert [outcome.result for outcome in outcomes] == [Result.SUCCESS] * len(AWKWARD_MSG_IDS)
    assert [msg_id for _, msg_id in seqs_of(room)] == AWKWARD_MSG_IDS
    retried = gifts_send([gift_request(fan, room, msg_id) for msg_id in AWKWARD_MSG_IDS])
    assert [(outcome.replayed, outcome.event.seq) for outcome in retried] == [
        (True, outcome.event.seq) for outcome in outcomes
    ]
    assert profile_balances(fan)["coins"] == 1_000 - 10 * len(AWKWARD_MSG_IDS)
    assert_ledger_sound()


def test_a_combo_counts_on_from_the_senders_newest_gift_in_the_room_only_within_the_window(room, rose):
    GiftFactory(gift_id="car", price=50)
    other_room = RoomFactory()
    streaking, lapsed, elsewhere = (ProfileFactory(coins=10_000) for _ in range(3))
    # given a streak of two roses, a streak that lapsed, and gifts in another room only
    gifts_send([gift_request(streaking, room, "s1"), gift_request(streaking, room, "s2")])
    gifts_send([gift_request(lapsed, room, "l1"), gift_request(lapsed, room, "l2", gift_code="car")])
    GiftEvent.objects.filter(sender=lapsed).update(created_at=timezone.now() - COMBO_WINDOW - timedelta(seconds=1))
    gifts_send([gift_request(elsewhere, other_room, "e1")])

    # when each sends again in the room, in one batch
    outcomes = gifts_send(
        [
            gift_request(streaking, room, "s3"),
            gift_request(lapsed, room, "l3", gift_code="car"),
            gift_request(elsewhere, room, "e2"),
            gift_request(streaking, room, "s4", gift_code="car"),
        ]
    )

    # then the streak counts on, the lapsed one and the newcomer start over, and another gift resets it
    assert [outcome.event.combo for outcome in outcomes] == [3, 1, 1, 1]
