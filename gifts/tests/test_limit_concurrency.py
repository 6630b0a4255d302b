"""Concurrent sends against a daily spending limit on PostgreSQL: none slips past it."""

from collections import Counter

import pytest
from django.db import connection

from gifts.results import Result
from gifts.services import gift_send, gifts_send
from gifts.tests.factories import GiftFactory, RoomFactory, gift_request
from gifts.tests.test_concurrency import run_in_threads
from wallets.models import SpendingLimit
from wallets.selectors import profile_balances
from wallets.tests.factories import ProfileFactory
from wallets.tests.ledger import assert_ledger_sound

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL's row locks"),
]


@pytest.mark.parametrize("path", ["own transaction each", "group commit"])
def test_eight_concurrent_sends_against_a_limit_that_allows_two(path):
    GiftFactory(gift_id="rose", price=10)
    room = RoomFactory()
    fan = ProfileFactory(coins=1_000)
    SpendingLimit.objects.create(profile=fan, daily_coins=25)

    def job(n):
        request = gift_request(fan, room, f"m{n}")
        return (gifts_send([request])[0] if path == "own transaction each" else gift_send(request)).result

    results = run_in_threads([lambda n=n: job(n) for n in range(8)])

    assert Counter(results) == {Result.SUCCESS: 2, Result.SPENDING_LIMIT: 6}
    assert profile_balances(fan)["coins"] == 1_000 - 20
    assert_ledger_sound()
