"""Refunding a gift, as its sender, its host, the room and staff would notice it."""

import datetime

import pytest
from django.db import transaction
from django.utils import timezone

from gifts.models import GiftEvent, HostGiftCount
from gifts.selectors import events_after, send_detail
from gifts.services import gift_send, room_go_live, room_go_off_air
from gifts.tests.factories import gift_request
from rankings.models import RankingEntry
from rankings.selectors import leaderboard_top
from refunds.models import Refund
from refunds.services import GiftToRefundNotFound, gift_refund
from wallets.models import Account, Transfer
from wallets.selectors import account_balance, profile_balances
from wallets.services import platform_account, transfer_create
from wallets.tests.factories import ProfileFactory
from wallets.tests.ledger import assert_ledger_sound

pytestmark = pytest.mark.django_db


def send(sender, room, msg_id, **kwargs) -> GiftEvent:
    outcome = gift_send(gift_request(sender, room, msg_id, **kwargs))
    assert outcome.ok, outcome
    return outcome.event


def revenue() -> int:
    return account_balance(platform_account(Account.Kind.REVENUE))


def board(room, period="all"):
    return [(row["user_id"], row["coins"]) for row in leaderboard_top(room=room, period=period)]


def test_the_sender_gets_the_full_cost_back_and_the_host_and_platform_give_back_their_shares(viewer, room, rose):
    gift = send(viewer, room, "m1", num=3)  # 30 coins: 15 to the host, 15 to the platform
    revenue_before = revenue()

    outcome = gift_refund(event=gift, reason="sent by mistake")

    assert outcome.created
    assert profile_balances(viewer) == {"coins": 10_000, "earnings": 0}
    assert profile_balances(room.host)["earnings"] == 0
    assert revenue() == revenue_before - 15
    refund = outcome.refund
    assert (refund.coins, refund.host_coins, refund.shortfall, refund.coins_balance) == (30, 15, 0, 10_000)
    transfer = refund.reversal.transfer
    assert transfer.kind == Transfer.Kind.REFUND and "sent by mistake" in transfer.memo
    assert_ledger_sound()


def test_a_refund_is_a_reversal_event_with_the_rooms_next_seq(viewer, room, rose):
    first = send(viewer, room, "m1")
    send(viewer, room, "m2")

    reversal = gift_refund(event=first).refund.reversal

    events = events_after(room, since=0)
    assert [(event["seq"], event["kind"], event["reverses_seq"]) for event in events] == [
        (1, "gift", None),
        (2, "gift", None),
        (3, "reversal", 1),
    ]
    assert events[2]["msg_id"] == "m1" and events[2]["coins"] == 10
    assert events[2]["sender"]["user_id"] == "alice"
    assert reversal.seq == 3
    room.refresh_from_db()
    assert room.last_seq == 3


def test_the_next_gift_after_a_refund_takes_the_seq_after_the_reversal_and_starts_a_new_streak(viewer, room, rose):
    first = send(viewer, room, "m1")
    gift_refund(event=first)

    after = send(viewer, room, "m2")

    assert (after.seq, after.combo) == (3, 1)


def test_a_second_refund_returns_the_first_and_moves_nothing(viewer, room, rose):
    gift = send(viewer, room, "m1")
    first = gift_refund(event=gift, reason="once")

    again = gift_refund(event=gift, reason="twice")

    assert not again.created and again.refund.pk == first.refund.pk
    assert Refund.objects.count() == 1 and Transfer.objects.filter(kind=Transfer.Kind.REFUND).count() == 1
    assert GiftEvent.objects.filter(kind=GiftEvent.Kind.REVERSAL).count() == 1
    assert profile_balances(viewer)["coins"] == 10_000


def test_a_reversal_cannot_itself_be_refunded(viewer, room, rose):
    reversal = gift_refund(event=send(viewer, room, "m1")).refund.reversal

    with pytest.raises(GiftToRefundNotFound):
        gift_refund(event=reversal)
    assert profile_balances(viewer)["coins"] == 10_000


def test_leaderboards_of_every_period_and_the_gift_wall_go_down(viewer, room, rose):
    rival = ProfileFactory(user_id="bob", coins=1_000)
    gift = send(viewer, room, "m1", num=5)
    send(viewer, room, "m2", num=2)
    send(rival, room, "b1", num=3)
    assert board(room) == [("alice", 70), ("bob", 30)]

    gift_refund(event=gift)

    for period in ("live", "day", "week", "all"):
        assert board(room, period) == [("bob", 30), ("alice", 20)], period
    assert HostGiftCount.objects.get(host=room.host, gift=rose).count == 5


def test_a_sender_whose_every_gift_was_refunded_leaves_the_board(viewer, room, rose):
    gift_refund(event=send(viewer, room, "m1"))

    assert board(room, "live") == [] and board(room, "all") == []


def test_a_gift_of_an_earlier_live_session_is_taken_off_that_sessions_board_only(viewer, room, rose):
    earlier = send(viewer, room, "m1", num=4)
    earlier_session = room.current_session_id
    room_go_off_air(room=room)
    room = room_go_live(room=room)
    send(viewer, room, "m2")

    gift_refund(event=earlier)

    live = {row.period_key: row.coins for row in RankingEntry.objects.filter(period="live")}
    assert live == {str(earlier_session): 0, str(room.current_session_id): 10}
    assert board(room, "all") == [("alice", 10)]


def test_a_gift_from_an_earlier_day_is_taken_off_that_days_board(viewer, room, rose):
    gift = send(viewer, room, "m1", num=2)
    yesterday = gift.created_at - datetime.timedelta(days=1)
    GiftEvent.objects.filter(pk=gift.pk).update(created_at=yesterday)
    RankingEntry.objects.filter(period="day").update(period_key=yesterday.date().isoformat())
    send(viewer, room, "m2")  # today's board

    gift_refund(event=GiftEvent.objects.get(pk=gift.pk))

    days = {row.period_key: row.coins for row in RankingEntry.objects.filter(period="day")}
    assert days == {yesterday.date().isoformat(): 0, timezone.now().date().isoformat(): 10}


def test_a_host_share_already_paid_out_is_covered_by_platform_revenue_and_written_on_the_transfer(viewer, room, rose):
    gift = send(viewer, room, "m1", num=10)  # 100 coins: 50 to the host
    earnings = Account.objects.get(profile=room.host, kind=Account.Kind.EARNINGS)
    # The host cashed out 40 of their 50.
    with transaction.atomic():
        transfer_create(
            kind=Transfer.Kind.GRANT,
            reference="cash-out",
            legs=[(earnings, -40), (platform_account(Account.Kind.ISSUED), 40)],
        )
    revenue_before = revenue()

    refund = gift_refund(event=gift).refund

    assert (refund.host_coins, refund.shortfall) == (10, 40)
    assert profile_balances(room.host)["earnings"] == 0
    assert revenue() == revenue_before - 90
    assert profile_balances(viewer)["coins"] == 10_000
    assert "host shortfall 40 covered by platform:revenue" in refund.reversal.transfer.memo
    assert_ledger_sound()


def test_the_senders_stored_send_says_refunded(viewer, room, rose):
    gift = send(viewer, room, "m1")
    assert send_detail(gift.receipt)["refunded"] is False

    gift_refund(event=gift)

    assert send_detail(gift.receipt)["refunded"] is True


def test_gifts_from_before_events_named_their_live_session_are_backfilled_and_refund_from_it(viewer, room, rose):
    import importlib

    from django.apps import apps

    backfill = importlib.import_module("gifts.migrations.0004_event_kind_reverses_live_session").live_sessions_backfill
    gift = send(viewer, room, "m1", num=3)
    GiftEvent.objects.filter(pk=gift.pk).update(live_session=None)  # as rows written before the column

    backfill(apps, None)

    assert GiftEvent.objects.get(pk=gift.pk).live_session_id == room.current_session_id
    gift_refund(event=GiftEvent.objects.get(pk=gift.pk))
    assert board(room, "live") == []
