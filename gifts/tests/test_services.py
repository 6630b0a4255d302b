"""gift_send as both APIs use it: money, seqs, receipts, and the ledger invariant under any mix."""

import itertools

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gifts.models import FailedDelivery, GiftEvent, HostGiftCount
from gifts.results import Result
from gifts.services import gift_send, room_go_live, room_go_off_air
from gifts.tests.factories import GiftFactory, RoomFactory, gift_request
from wallets.models import Account
from wallets.selectors import account_balance, profile_balances
from wallets.services import coins_grant, platform_account, topup_create
from wallets.tests.factories import ProfileFactory
from wallets.tests.ledger import assert_ledger_sound

pytestmark = pytest.mark.django_db


def send(sender, room, gift_code, *, msg_id, value=1, num=1, receiver=None, session=None):
    return gift_send(
        gift_request(
            sender, room, msg_id, gift_code=gift_code, value=value, num=num, session=session, receiver=receiver
        )
    )


def test_a_gift_splits_its_cost_between_host_and_platform(viewer, room):
    GiftFactory(gift_id="odd", price=7)
    # given a 7-coin gift x 3 = 21 coins, host share 50%
    outcome = send(viewer, room, "odd", msg_id="m1", num=3)
    # then the host gets floor(10.5) = 10, the platform the other 11
    assert outcome.result is Result.SUCCESS
    assert outcome.coins_balance == 10_000 - 21
    assert profile_balances(room.host)["earnings"] == 10
    assert account_balance(platform_account(Account.Kind.REVENUE)) == 11
    assert HostGiftCount.objects.get(host=room.host).count == 3
    assert_ledger_sound()


@override_settings(HOST_SHARE_PERCENT=100)
def test_full_host_share_sends_nothing_to_the_platform(viewer, room, rose):
    assert send(viewer, room, "rose", msg_id="m1").ok
    assert profile_balances(room.host)["earnings"] == 10
    assert_ledger_sound()


@override_settings(HOST_SHARE_PERCENT=0)
def test_zero_host_share_sends_everything_to_the_platform(viewer, room, rose):
    assert send(viewer, room, "rose", msg_id="m1").ok
    assert profile_balances(room.host)["earnings"] == 0
    assert account_balance(platform_account(Account.Kind.REVENUE)) == 10
    assert_ledger_sound()


def test_seqs_are_contiguous_per_room(viewer, rose):
    first, second = RoomFactory(), RoomFactory()
    for index in range(3):
        send(viewer, first, "rose", msg_id=f"a{index}")
        send(viewer, second, "rose", msg_id=f"b{index}")
    assert list(GiftEvent.objects.filter(room=first).order_by("seq").values_list("seq", flat=True)) == [1, 2, 3]
    assert list(GiftEvent.objects.filter(room=second).order_by("seq").values_list("seq", flat=True)) == [1, 2, 3]


def test_failures_take_no_seq_and_are_queued_for_staff(viewer, room, rose):
    assert send(viewer, room, "nope", msg_id="m1").result is Result.GIFT_NOT_CONFIGURED
    assert send(viewer, room, "rose", msg_id="m2", num=10_000).result is Result.INSUFFICIENT_BALANCE
    assert send(viewer, room, "rose", msg_id="m3").event.seq == 1
    assert FailedDelivery.objects.filter(msg_id__in=["m1", "m2"]).count() == 2
    assert profile_balances(viewer)["coins"] == 9_990


def test_replay_of_success_and_of_failure_moves_nothing(viewer, room, rose):
    ok = send(viewer, room, "rose", msg_id="m1")
    short = send(viewer, room, "rose", msg_id="m2", num=5_000)
    again_ok = send(viewer, room, "rose", msg_id="m1")
    # a later top-up does not turn the settled 10007 into a success
    topup_create(profile=viewer, amount=1_000_000, reference="later")
    again_short = send(viewer, room, "rose", msg_id="m2", num=5_000)
    assert (again_ok.result, again_ok.replayed, again_ok.event.seq) == (Result.SUCCESS, True, ok.event.seq)
    assert (again_short.result, again_short.message) == (short.result, short.message)
    assert profile_balances(viewer)["coins"] == 10_000 - 10 + 1_000_000
    assert GiftEvent.objects.count() == 1


def test_a_host_cannot_gift_their_own_room(room, rose):
    topup_create(profile=room.host, amount=100, reference="h")
    assert send(room.host, room, "rose", msg_id="m1").result is Result.DELIVERY_FAILED
    assert profile_balances(room.host)["coins"] == 100


def test_msg_ids_belong_to_their_sender(room, rose):
    alice, bob = ProfileFactory(coins=100), ProfileFactory(coins=100)
    assert send(alice, room, "rose", msg_id="same").ok
    assert send(bob, room, "rose", msg_id="same").ok
    assert profile_balances(alice)["coins"] == profile_balances(bob)["coins"] == 90


# --- the invariant under any mix of operations ----------------------------------------------------

_example = itertools.count()

operation = st.one_of(
    st.tuples(st.just("topup"), st.integers(0, 2), st.integers(1, 500)),
    st.tuples(st.just("grant"), st.integers(0, 2), st.integers(1, 500)),
    st.tuples(st.just("gift"), st.integers(0, 2), st.integers(1, 40)),
    st.tuples(st.just("bad_gift"), st.integers(0, 2), st.integers(1, 3)),
    st.tuples(st.just("replay"), st.integers(0, 2), st.integers(0, 20)),
    st.tuples(st.just("off_air"), st.integers(0, 2), st.integers(0, 1)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(operation, min_size=1, max_size=15))
def test_ledger_invariant_after_any_mix_of_operations(db, operations):
    # Each example uses fresh people and rooms, so the invariant (which is global) is checked
    # against everything every earlier example left behind as well.
    run = next(_example)
    gift = GiftFactory(gift_id="prop-rose", price=7)
    viewers = [ProfileFactory(user_id=f"p{run}v{index}") for index in range(3)]
    rooms = [
        RoomFactory(room_id=f"p{run}r{index}", host=ProfileFactory(user_id=f"p{run}h{index}")) for index in range(2)
    ]
    sent: list[tuple[int, str, int]] = []
    for step, (kind, who, amount) in enumerate(operations):
        sender = viewers[who]
        room = rooms[step % 2]
        if kind == "topup":
            topup_create(profile=sender, amount=amount, reference=f"p{run}-{step}")
        elif kind == "grant":
            coins_grant(profile=sender, amount=amount, staff_user=None)
        elif kind == "gift":
            room.refresh_from_db()
            before = profile_balances(sender)["coins"]
            outcome = send(sender, room, gift.gift_id, msg_id=f"m{step}", num=amount)
            after = profile_balances(sender)["coins"]
            if outcome.ok:
                assert before - after == gift.price * amount
                sent.append((who, f"m{step}", amount))
            else:
                assert outcome.result in (Result.INSUFFICIENT_BALANCE, Result.IN_FLIGHT) or not room.is_live
                assert before == after
        elif kind == "bad_gift":
            before = profile_balances(sender)["coins"]
            outcome = send(sender, rooms[0], "no-such-gift", msg_id=f"m{step}", num=amount)
            assert outcome.result is Result.GIFT_NOT_CONFIGURED
            assert profile_balances(sender)["coins"] == before
        elif kind == "replay" and sent:
            original_who, msg_id, num = sent[amount % len(sent)]
            replayer = viewers[original_who]
            before = profile_balances(replayer)["coins"]
            outcome = send(replayer, rooms[0], gift.gift_id, msg_id=msg_id, num=num)
            assert outcome.result in (Result.SUCCESS, Result.MSG_ID_REUSED)
            assert profile_balances(replayer)["coins"] == before
        elif kind == "off_air":
            room.refresh_from_db()
            (room_go_off_air if amount else room_go_live)(room=room)
        assert_ledger_sound()
