"""Money operations repeated at the same moment on PostgreSQL: each happens once."""

import pytest
from django.db import connection

from gifts.services import gift_send
from gifts.tests.factories import GiftFactory, RoomFactory, gift_request
from gifts.tests.test_concurrency import run_in_threads
from wallets.models import Transfer
from wallets.selectors import profile_balances, profile_owed
from wallets.services import payout_create, topup_create, topup_reverse
from wallets.tests.factories import ProfileFactory
from wallets.tests.ledger import assert_ledger_sound

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL's row locks"),
]


def test_the_same_payout_eight_times_at_once_pays_once():
    GiftFactory(gift_id="rose", price=10)
    room = RoomFactory()
    gift_send(gift_request(ProfileFactory(coins=1_000), room, "m1", num=100))  # 500 coins of earnings

    results = run_in_threads([lambda: payout_create(profile=room.host, amount=300, reference="bank-1")] * 8)

    assert sum(created for _, created in results) == 1
    assert len({transfer.pk for transfer, _ in results}) == 1
    assert profile_balances(room.host)["earnings"] == 200
    assert_ledger_sound()


def test_the_same_chargeback_eight_times_at_once_reverses_once():
    GiftFactory(gift_id="rose", price=10)
    fan = ProfileFactory()
    topup_create(profile=fan, amount=100, reference="card-1")
    gift_send(gift_request(fan, RoomFactory(), "m1", num=4))  # 40 spent

    results = run_in_threads([lambda: topup_reverse(reference="card-1")] * 8)

    assert sum(reversal.created for reversal in results) == 1
    assert {(reversal.taken, reversal.owed) for reversal in results} == {(60, 40)}
    assert profile_balances(fan)["coins"] == 0 and profile_owed(fan) == 40
    assert Transfer.objects.filter(kind=Transfer.Kind.CHARGEBACK).count() == 1
    assert_ledger_sound()
