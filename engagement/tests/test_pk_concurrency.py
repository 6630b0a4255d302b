"""PK battles under races on PostgreSQL, with real threads and row locks: the cut is exact."""

import datetime
import random
import time

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from engagement.models import PkBattle, PkSide
from engagement.services import pk_battle_start, pk_battles_end_due
from gifting_site.errors import PkConflict
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


def counted(side: PkSide) -> int:
    """The oracle: the coins of the room's gifts between the battle's start and its pk_end,
    less those refunded before the pk_end (by a reversal that precedes it)."""
    events = GiftEvent.objects.filter(room=side.room, seq__gt=side.start_seq, seq__lt=side.end_seq)
    gifts = sum(event.coins for event in events if event.kind == "gift")
    taken_back = sum(
        event.coins for event in events if event.kind == "reversal" and event.reverses.seq > side.start_seq
    )
    return gifts - taken_back


def test_gifts_and_refunds_racing_the_end_count_exactly_when_they_precede_their_rooms_pk_end():
    GiftFactory(gift_id="rose", price=10)
    red, blue = RoomFactory(room_id="red"), RoomFactory(room_id="blue")
    fans = [ProfileFactory(coins=100_000) for _ in range(4)]
    battle = pk_battle_start(room_ids=["red", "blue"], duration_s=60, source="staff")
    early = [
        gift_send(gift_request(fan, room, f"{fan.user_id}-{room.room_id}-early", num=2)).event
        for fan in fans
        for room in (red, blue)
    ]

    def sender(fan, room):
        def send():
            return [gift_send(gift_request(fan, room, f"{fan.user_id}-{room.room_id}-{n}")).result for n in range(30)]

        return send

    def referee():
        time.sleep(random.uniform(0.02, 0.1))
        PkBattle.objects.filter(pk=battle.pk).update(ends_at=timezone.now())
        return pk_battles_end_due()

    def refunder(event):
        def refund():
            time.sleep(random.uniform(0, 0.15))
            return gift_refund(event=event).created

        return refund

    jobs = [sender(fan, room) for fan in fans for room in (red, blue)] + [referee]
    jobs += [refunder(event) for event in early[:4]]
    results = run_in_threads(jobs)

    assert all(result == [0] * 30 for result in results[:8]) and results[8] == [battle.pk]
    battle.refresh_from_db()
    answer = Client().get(f"/api/pk/{battle.pk}/").json()
    assert answer["state"] == "ended"
    for side in PkSide.objects.filter(battle=battle).select_related("room"):
        pk_end = GiftEvent.objects.get(room=side.room, kind="pk_end")
        assert side.end_seq == pk_end.seq
        # some gifts of the room came after its end, and they did not count
        assert GiftEvent.objects.filter(room=side.room, kind="gift", seq__gt=pk_end.seq).exists()
        assert side.score == counted(side)
        assert {s["room_id"]: s["score"] for s in answer["sides"]}[side.room.room_id] == side.score
        seqs = list(GiftEvent.objects.filter(room=side.room).order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
    scores = {side.room_id: side.score for side in battle.sides.all()}
    best = max(scores.values())
    leaders = [room for room, score in scores.items() if score == best]
    assert battle.winner_id == (leaders[0] if len(leaders) == 1 else None)
    assert_ledger_sound()


def test_of_concurrent_starts_on_one_room_one_wins_and_the_others_are_7200006():
    GiftFactory(gift_id="rose", price=10)
    RoomFactory(room_id="shared")
    others = [RoomFactory(room_id=f"other{n}") for n in range(6)]

    def start(other):
        def attempt():
            try:
                return pk_battle_start(room_ids=["shared", other.room_id], duration_s=60, source="server").pk
            except PkConflict as refused:
                return refused.code

        return attempt

    results = run_in_threads([start(other) for other in others])

    assert sorted(result == 7200006 for result in results) == [False] + [True] * 5
    assert PkBattle.objects.count() == 1
    assert PkBattle.objects.get().state == "running"


def test_many_clocks_end_a_battle_once():
    red, blue = RoomFactory(room_id="red"), RoomFactory(room_id="blue")
    battle = pk_battle_start(room_ids=["red", "blue"], duration_s=60, source="staff")
    PkBattle.objects.filter(pk=battle.pk).update(ends_at=timezone.now() - datetime.timedelta(seconds=1))

    results = run_in_threads([pk_battles_end_due] * 6)

    assert sorted(results) == [[]] * 5 + [[battle.pk]]
    for room in (red, blue):
        assert GiftEvent.objects.filter(room=room, kind="pk_end").count() == 1


def test_gifts_racing_the_start_count_exactly_when_numbered_after_it():
    GiftFactory(gift_id="rose", price=10)
    red, blue = RoomFactory(room_id="red"), RoomFactory(room_id="blue")
    fans = [ProfileFactory(coins=100_000) for _ in range(4)]

    def sender(fan, room):
        def send():
            return [gift_send(gift_request(fan, room, f"{fan.user_id}-{room.room_id}-{n}")).result for n in range(25)]

        return send

    def starter():
        # Start once both rooms have gifts numbered, so that some come before the start.
        deadline = time.monotonic() + 30
        while Room.objects.filter(room_id__in=["red", "blue"], last_seq__gte=3).count() < 2:
            assert time.monotonic() < deadline, "no gifts were numbered"
            time.sleep(0.005)
        time.sleep(random.uniform(0, 0.05))
        return pk_battle_start(room_ids=["red", "blue"], duration_s=60, source="server").pk

    results = run_in_threads([sender(fan, room) for fan in fans for room in (red, blue)] + [starter])

    assert all(result == [0] * 25 for result in results[:8])
    for side in PkSide.objects.filter(battle_id=results[8]).select_related("room"):
        gifts = GiftEvent.objects.filter(room=side.room, kind="gift")
        assert gifts.filter(seq__lte=side.start_seq).exists()  # some came before the start: not counted
        assert side.score == sum(gifts.filter(seq__gt=side.start_seq).values_list("coins", flat=True))
