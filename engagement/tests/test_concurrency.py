"""A goal changed while gifts and refunds race in its room, on PostgreSQL with real threads and row locks."""

import random
import time

import pytest
from django.db import connection

from engagement.models import Goal
from engagement.selectors import goal_recount, goals_audit
from engagement.services import room_goal_set
from gifts.models import GiftEvent, Room
from gifts.services import gift_send
from gifts.tests.factories import GiftFactory, RoomFactory, gift_request
from gifts.tests.test_concurrency import run_in_threads
from refunds.services import gift_refund
from wallets.tests.factories import ProfileFactory
from wallets.tests.ledger import assert_ledger_sound

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL's row locks"),
]


def test_a_goal_changed_while_gifts_and_refunds_race_counts_each_gift_exactly_once():
    GiftFactory(gift_id="rose", price=10)
    GiftFactory(gift_id="car", price=100)
    room = RoomFactory()
    fans = [ProfileFactory(coins=100_000) for _ in range(4)]
    room_goal_set(room=room, by=room.host, title="coins", target=5_000)
    early = [gift_send(gift_request(fan, room, f"{fan.user_id}-early", num=2)).event for fan in fans]

    def sender(fan):
        def send():
            return [
                gift_send(gift_request(fan, room, f"{fan.user_id}-{n}", gift_code=("rose", "car")[n % 2])).result
                for n in range(25)
            ]

        return send

    def host():
        # Every kind of change, while the gifts keep coming: the target, then what is counted.
        for title, target, gift_id in [
            ("coins", 6_000, None),
            ("roses", 20, "rose"),
            ("roses", 30, "rose"),
            ("cars", 10, "car"),
            ("coins again", 1_000, None),
        ]:
            time.sleep(random.uniform(0.005, 0.03))
            room_goal_set(room=room, by=room.host, title=title, target=target, gift_id=gift_id)
        return True

    def refunder(event):
        def refund():
            time.sleep(random.uniform(0, 0.05))
            return gift_refund(event=event).created

        return refund

    results = run_in_threads([*(sender(fan) for fan in fans), host, *(refunder(event) for event in early)])

    assert results[:4] == [[0] * 25] * 4 and results[4:] == [True] * 5
    goal = goal_recount(Goal.objects.filter(pk=Room.objects.get(pk=room.pk).goal_id)).get()
    assert goal.title == "coins again" and goal.gift_id is None
    # The oracle, in Python: the coins of the unrefunded gifts numbered after the goal's last change.
    expected = sum(
        event.coins
        for event in GiftEvent.objects.filter(room=room, kind="gift", seq__gt=goal.from_seq)
        if not hasattr(event, "refund")
    )
    assert goal.progress == goal.recount == expected
    assert (goal.reached_at is not None) == (expected >= 1_000)
    assert [check.ok for check in goals_audit()] == [True]
    seqs = list(GiftEvent.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert_ledger_sound()
