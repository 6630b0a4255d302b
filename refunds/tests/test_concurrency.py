"""Refunds racing each other and the gifts of their room on PostgreSQL, with real threads and row locks."""

import pytest
from django.db import connection

from gifts.models import GiftEvent
from gifts.selectors import gifts_audit
from gifts.services import gift_send
from gifts.tests.factories import GiftFactory, RoomFactory, gift_request
from gifts.tests.test_concurrency import run_in_threads
from rankings.selectors import leaderboard_top
from refunds.models import Refund
from refunds.services import gift_refund
from wallets.models import Transfer
from wallets.selectors import profile_balances
from wallets.services import InsufficientBalance, payout_create
from wallets.tests.factories import ProfileFactory
from wallets.tests.ledger import assert_ledger_sound

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL's row locks"),
]


def test_eight_refunds_of_one_gift_at_once_give_the_coins_back_once():
    GiftFactory(gift_id="rose", price=10)
    room = RoomFactory()
    fan = ProfileFactory(coins=1_000)
    gift = gift_send(gift_request(fan, room, "m1", num=7)).event

    outcomes = run_in_threads([lambda: gift_refund(event=gift, reason="race")] * 8)

    assert sum(outcome.created for outcome in outcomes) == 1
    assert len({outcome.refund.pk for outcome in outcomes}) == 1
    assert {outcome.refund.coins_balance for outcome in outcomes} == {1_000}
    assert profile_balances(fan)["coins"] == 1_000
    assert Transfer.objects.filter(kind=Transfer.Kind.REFUND).count() == 1 == Refund.objects.count()
    assert GiftEvent.objects.filter(kind="reversal").count() == 1
    assert_ledger_sound()


def test_refunds_racing_gifts_in_one_room_keep_seqs_contiguous_and_boards_exact():
    GiftFactory(gift_id="rose", price=10)
    room = RoomFactory()
    fans = [ProfileFactory(coins=10_000) for _ in range(4)]
    early = [gift_send(gift_request(fan, room, f"{fan.user_id}-early", num=3)).event for fan in fans]

    def sender(fan):
        return lambda: [gift_send(gift_request(fan, room, f"{fan.user_id}-{n}")).result for n in range(20)]

    def refunder(event):
        return lambda: gift_refund(event=event, reason="race").created

    results = run_in_threads([*(sender(fan) for fan in fans), *(refunder(event) for event in early)])

    assert results[:4] == [[0] * 20] * 4 and results[4:] == [True] * 4
    seqs = list(GiftEvent.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 4 + 80 + 4 + 1))
    assert {row["coins"] for row in leaderboard_top(room=room, period="live")} == {200}
    for fan in fans:
        assert profile_balances(fan)["coins"] == 10_000 - 200
    assert all(check.ok for check in gifts_audit())
    assert_ledger_sound()


def test_a_refund_racing_a_payout_of_the_same_earnings_never_overdraws_the_host():
    GiftFactory(gift_id="rose", price=10)
    room = RoomFactory()
    fan = ProfileFactory(coins=1_000)
    gift = gift_send(gift_request(fan, room, "m1", num=10)).event  # 100 coins: 50 to the host

    def pay_out():
        try:
            return payout_create(profile=room.host, amount=50, reference="bank-1")[1]
        except InsufficientBalance:
            return False

    paid, refund = run_in_threads([pay_out, lambda: gift_refund(event=gift).refund])

    refund.refresh_from_db()
    earnings = profile_balances(room.host)["earnings"]
    if paid:  # the payout went first: the refund found nothing left, platform revenue covered it all
        assert (refund.host_coins, refund.shortfall, earnings) == (0, 50, 0)
    else:  # the refund went first: nothing left to pay out
        assert (refund.host_coins, refund.shortfall, earnings) == (50, 0, 0)
    assert profile_balances(fan)["coins"] == 1_000
    assert all(check.ok for check in gifts_audit())
    assert_ledger_sound()
