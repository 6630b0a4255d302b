"""Random mixes of top-ups, gifts, refunds, chargebacks and payouts: the books, the boards and the
room's goal stay exact after every step."""

import itertools
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engagement.models import Goal
from engagement.services import room_goal_set
from gifts.models import HostGiftCount
from gifts.results import Result
from gifts.selectors import gifts_audit
from gifts.services import gift_send
from gifts.tests.factories import GiftFactory, RoomFactory, gift_request
from rankings.models import RankingEntry
from refunds.services import gift_refund
from wallets.selectors import ledger_audit, profile_balances, profile_owed
from wallets.services import InsufficientBalance, payout_create, topup_create, topup_reverse
from wallets.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db

SENDERS = 3
_runs = itertools.count()

operations = st.lists(
    st.one_of(
        st.tuples(st.just("top_up"), st.integers(0, SENDERS - 1), st.integers(1, 500)),
        st.tuples(st.just("send"), st.integers(0, SENDERS - 1), st.integers(1, 40)),
        # Refund the n-th gift sent so far (modulo how many there are); a repeat must change nothing.
        st.tuples(st.just("refund"), st.integers(0, 1_000), st.just(0)),
        # Reverse the n-th top-up so far (a chargeback); a repeat must change nothing.
        st.tuples(st.just("chargeback"), st.integers(0, 1_000), st.just(0)),
        st.tuples(st.just("payout"), st.just(0), st.integers(1, 60)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=operations)
def test_ledger_and_boards_hold_after_every_step(rose, steps):
    # Each example gets its own room and people; the ledger checks cover everything written so far.
    run = next(_runs)
    room = RoomFactory(room_id=f"prop{run}", host=ProfileFactory(user_id=f"prop{run}-host"))
    senders = [ProfileFactory(user_id=f"prop{run}-fan{index}", coins=100) for index in range(SENDERS)]
    coins, owed, earnings = [100] * SENDERS, [0] * SENDERS, 0
    top_ups = [(f"factory-{sender.user_id}", index, 100) for index, sender in enumerate(senders)]
    reversed_top_ups: set[str] = set()
    paid: list = []  # (event, sender index)
    refunded: set[int] = set()
    references = itertools.count()
    room_goal_set(room=room, by=room.host, title="goal", target=150)
    reached = False  # the goal, once reached, stays so

    for kind, who, amount in steps:
        if kind == "top_up":
            reference = f"prop{run}-{next(references)}"
            topup_create(profile=senders[who], amount=amount, reference=reference)
            top_ups.append((reference, who, amount))
            repaid = min(owed[who], amount)
            owed[who] -= repaid
            coins[who] += amount - repaid
        elif kind == "send":
            outcome = gift_send(gift_request(senders[who], room, f"prop{run}-{next(references)}", num=amount))
            cost = amount * rose.price
            if owed[who]:
                assert outcome.result == Result.ON_HOLD, outcome
            else:
                assert outcome.ok == (coins[who] >= cost), outcome
            if outcome.ok:
                coins[who] -= cost
                earnings += cost // 2
                paid.append((outcome.event, who))
        elif kind == "refund" and paid:
            event, sender = paid[who % len(paid)]
            outcome = gift_refund(event=event)
            assert outcome.created == (event.pk not in refunded)
            if outcome.created:
                coins[sender] += event.coins
                assert outcome.refund.host_coins == min(event.coins // 2, earnings)
                earnings -= outcome.refund.host_coins
                refunded.add(event.pk)
        elif kind == "chargeback":
            reference, sender, topped_up = top_ups[who % len(top_ups)]
            reversal = topup_reverse(reference=reference)
            assert reversal.created == (reference not in reversed_top_ups)
            if reversal.created:
                reversed_top_ups.add(reference)
                assert reversal.taken == min(topped_up, coins[sender])
                coins[sender] -= reversal.taken
                owed[sender] += topped_up - reversal.taken
        elif kind == "payout":
            try:
                payout_create(profile=room.host, amount=amount, reference=f"prop{run}-{next(references)}")
            except InsufficientBalance:
                assert amount > earnings
            else:
                earnings -= amount

        assert all(check.ok for check in [*ledger_audit(), *gifts_audit()]), [
            check for check in [*ledger_audit(), *gifts_audit()] if not check.ok
        ]
        assert [profile_balances(sender)["coins"] for sender in senders] == coins
        assert [profile_owed(sender) for sender in senders] == owed
        assert profile_balances(room.host)["earnings"] == earnings
        standing = [(event, who) for event, who in paid if event.pk not in refunded]
        by_sender = Counter()
        for event, who in standing:
            by_sender[senders[who].pk] += event.coins
        for period in ("live", "day", "week", "all"):
            board = dict(
                RankingEntry.objects.filter(room=room, period=period, coins__gt=0).values_list("profile_id", "coins")
            )
            assert board == {profile: total for profile, total in by_sender.items() if total}, period
        wall = HostGiftCount.objects.filter(host=room.host, gift=rose).values_list("count", flat=True).first() or 0
        assert wall == sum(event.count for event, _ in standing)
        goal = Goal.objects.get(room=room)
        reached = reached or sum(by_sender.values()) >= goal.target
        assert (goal.progress, goal.reached_at is not None) == (sum(by_sender.values()), reached)


@pytest.fixture
def rose(db):
    return GiftFactory(gift_id="rose", name="Rose", price=3)
