"""Payouts and top-up reversals, as the host, the chargebacked viewer and staff would notice them."""

import pytest

from gifts.results import Result
from gifts.services import gift_send
from gifts.tests.factories import gift_request
from wallets.models import Account, Transfer
from wallets.selectors import account_balance, profile_balances, profile_owed
from wallets.services import (
    InsufficientBalance,
    TopUpNotFound,
    TransferConflict,
    payout_create,
    platform_account,
    topup_create,
    topup_reverse,
)
from wallets.tests.factories import ProfileFactory
from wallets.tests.ledger import assert_ledger_sound

pytestmark = pytest.mark.django_db


@pytest.fixture
def host_with_earnings(viewer, room, rose):
    """The room's host, after alice sent 100 roses (1,000 coins: 500 to the host)."""
    assert gift_send(gift_request(viewer, room, "m1", num=100)).ok
    return room.host


# --- payouts ---------------------------------------------------------------------------------------


def test_a_payout_moves_earnings_to_platform_payouts_once_per_reference(host_with_earnings):
    transfer, created = payout_create(profile=host_with_earnings, amount=300, reference="bank-1")
    again, created_again = payout_create(profile=host_with_earnings, amount=300, reference="bank-1")

    assert created and not created_again and again.pk == transfer.pk
    assert profile_balances(host_with_earnings)["earnings"] == 200
    assert account_balance(platform_account(Account.Kind.PAYOUTS)) == 300
    assert_ledger_sound()


def test_a_payout_of_more_than_the_earnings_pays_nothing(host_with_earnings):
    with pytest.raises(InsufficientBalance):
        payout_create(profile=host_with_earnings, amount=501, reference="bank-1")

    assert profile_balances(host_with_earnings)["earnings"] == 500
    assert not Transfer.objects.filter(kind=Transfer.Kind.PAYOUT).exists()


def test_a_payout_reference_used_for_another_amount_or_host_is_refused(host_with_earnings, viewer):
    payout_create(profile=host_with_earnings, amount=100, reference="bank-1")

    for profile, amount in ((host_with_earnings, 101), (viewer, 100)):
        with pytest.raises(TransferConflict):
            payout_create(profile=profile, amount=amount, reference="bank-1")
    assert profile_balances(host_with_earnings)["earnings"] == 400


# --- top-up reversals ------------------------------------------------------------------------------


@pytest.fixture
def fan(db):
    fan = ProfileFactory(user_id="fan")
    topup_create(profile=fan, amount=1_000, reference="card-1")
    return fan


def test_reversing_a_top_up_whose_coins_are_all_held_takes_them_back(fan):
    reversal = topup_reverse(reference="card-1", reason="chargeback")

    assert (reversal.amount, reversal.taken, reversal.owed, reversal.created) == (1_000, 1_000, 0, True)
    assert profile_balances(fan)["coins"] == 0 and profile_owed(fan) == 0
    assert "chargeback" in reversal.transfer.memo
    assert_ledger_sound()


def test_coins_already_spent_are_owed_and_the_user_cannot_send_until_a_top_up_repays_them(fan, room, rose):
    assert gift_send(gift_request(fan, room, "m1", num=70)).ok  # 700 coins spent

    reversal = topup_reverse(reference="card-1")

    assert (reversal.taken, reversal.owed) == (300, 700)
    assert profile_balances(fan)["coins"] == 0 and profile_owed(fan) == 700
    assert_ledger_sound()

    # while anything is owed, even a gift the coins would cover is refused: 10011
    topup_create(profile=fan, amount=500, reference="card-2")  # all of it repays the debt
    assert profile_balances(fan)["coins"] == 0 and profile_owed(fan) == 200
    on_hold = gift_send(gift_request(fan, room, "m2"))
    assert on_hold.result == Result.ON_HOLD and "200 coins are owed" in on_hold.message

    topup_create(profile=fan, amount=250, reference="card-3")  # 200 repay the rest, 50 to spend
    assert profile_balances(fan)["coins"] == 50 and profile_owed(fan) == 0
    assert gift_send(gift_request(fan, room, "m3")).ok
    assert Transfer.objects.filter(kind=Transfer.Kind.REPAYMENT).count() == 2
    assert_ledger_sound()


def test_a_top_up_is_reversed_once(fan, room, rose):
    assert gift_send(gift_request(fan, room, "m1", num=50)).ok
    first = topup_reverse(reference="card-1", reason="first")

    again = topup_reverse(reference="card-1", reason="again")

    assert not again.created and again.transfer.pk == first.transfer.pk
    assert (again.taken, again.owed) == (500, 500)
    assert profile_owed(fan) == 500
    assert Transfer.objects.filter(kind=Transfer.Kind.CHARGEBACK).count() == 1


def test_an_unknown_top_up_cannot_be_reversed(fan):
    with pytest.raises(TopUpNotFound):
        topup_reverse(reference="card-404")
    assert profile_balances(fan)["coins"] == 1_000
