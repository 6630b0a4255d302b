"""Business servers retrying batches at the same time, on PostgreSQL with real threads."""

import json
from collections import Counter

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client

from gifts.models import GiftEvent, GiftReceipt, ServerApp
from gifts.services import game_join
from gifts.tests.factories import GiftFactory, MiniGameFactory, RoomFactory, ValueTierFactory, started_game
from gifts.tests.test_concurrency import assert_ledger_sound, run_in_threads
from gifts.tests.test_server_api import APP_ID, SECRET, item, signed_url
from wallets.models import Profile
from wallets.selectors import profile_balances
from wallets.tests.factories import ProfileFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: SQLite runs one writer at a time, so there is no concurrency to test",
    ),
]


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


def send(body):
    """One call from its own client, as a separate business-server worker would make it."""

    def job():
        response = Client().post(signed_url(), json.dumps(body), content_type="application/json")
        assert response.status_code == 200
        return response.json()

    return job


def test_overlapping_batches_with_shared_msg_ids_apply_each_gift_exactly_once():
    ServerApp.objects.create(app_id=APP_ID, secret=SECRET)
    room = RoomFactory(room_id="arena")
    g1 = GiftFactory(gift_id="g1", price=1)
    game = MiniGameFactory()
    ValueTierFactory(mini_game=game, gift=g1, value=10, effect="soldier")
    started_game(room, game)
    fans = [ProfileFactory(user_id=f"fan{index}", coins=10_000) for index in range(4)]
    for fan in fans:
        game_join(room=room, profile=fan)

    # 40 MsgIds; four workers each send an overlapping window of 20, so every MsgId travels
    # in two batches at once (a retry racing the original, as after a timeout).
    gifts = [item(f"m{index}", fans[index % 4].user_id, value=10, num=1) for index in range(40)]
    windows = [gifts[0:20], gifts[10:30], gifts[20:40], gifts[30:40] + gifts[0:10]]
    answers = run_in_threads(
        [send({"RoomId": "arena", "MiniGameId": "TinyLoveWar", "GiftList": window}) for window in windows]
    )

    seen: Counter[str] = Counter()
    for window, answer in zip(windows, answers, strict=True):
        assert answer["Code"] == 0, answer
        rows = answer["Data"]["Results"]
        assert [row["MsgId"] for row in rows] == [gift["MsgId"] for gift in window]  # GiftList order
        for row in rows:
            # the loser of a race sees the gift in flight, or the winner's stored success
            assert row["Result"] in (0, 10006), row
            seen[row["MsgId"]] += 1
    assert set(seen) == {f"m{index}" for index in range(40)}

    events = Counter(GiftEvent.objects.filter(room=room).values_list("msg_id", flat=True))
    assert events == {f"m{index}": 1 for index in range(40)}
    assert GiftReceipt.objects.filter(scope=f"app:{APP_ID}").count() == 40
    for fan in fans:
        assert profile_balances(fan)["coins"] == 10_000 - 10 * 10  # ten gifts of 10 coins each
    seqs = sorted(GiftEvent.objects.filter(room=room).values_list("seq", flat=True))
    assert seqs == list(range(1, 41))
    assert_ledger_sound()


def test_unknown_users_arriving_in_parallel_batches_become_one_user_each():
    ServerApp.objects.create(app_id=APP_ID, secret=SECRET)
    RoomFactory(room_id="chat")
    GiftFactory(gift_id="rose", price=1)
    newcomers = [item(f"n{index}", f"new{index}", gift_id="rose", value=1) for index in range(10)]

    answers = run_in_threads([send({"RoomId": "chat", "GiftList": newcomers}) for _ in range(3)])

    for answer in answers:
        assert answer["Code"] == 0
        # new users have no coins: 10007, stored and answered again, or 10006 while in flight
        assert {row["Result"] for row in answer["Data"]["Results"]} <= {10006, 10007}
    assert Profile.objects.filter(user_id__startswith="new").count() == 10
    assert GiftEvent.objects.count() == 0
    assert_ledger_sound()
