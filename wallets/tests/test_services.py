"""The ledger: balanced transfers only, no overdraft, nothing ever negative."""

import pytest
from django.db import IntegrityError, transaction

from wallets.models import Account, Entry, Transfer
from wallets.selectors import account_balance, profile_balances
from wallets.services import (
    InsufficientBalance,
    TransferConflict,
    coins_account,
    coins_grant,
    platform_account,
    topup_create,
    transfer_create,
)
from wallets.tests.factories import ProfileFactory
from wallets.tests.ledger import assert_ledger_sound

pytestmark = pytest.mark.django_db


def ledger_rows():
    return Transfer.objects.count(), Entry.objects.count()


def test_topup_credits_coins_once_per_reference():
    alice = ProfileFactory()
    _, created = topup_create(profile=alice, amount=500, reference="pay-1")
    _, again = topup_create(profile=alice, amount=500, reference="pay-1")
    assert (created, again) == (True, False)
    assert profile_balances(alice) == {"coins": 500, "earnings": 0}
    assert account_balance(platform_account(Account.Kind.ISSUED)) == -500
    assert_ledger_sound()


def test_topup_reference_reused_for_another_amount_is_a_conflict():
    alice = ProfileFactory()
    topup_create(profile=alice, amount=500, reference="pay-1")
    with pytest.raises(TransferConflict):
        topup_create(profile=alice, amount=600, reference="pay-1")
    with pytest.raises(TransferConflict):
        topup_create(profile=ProfileFactory(), amount=500, reference="pay-1")
    assert profile_balances(alice)["coins"] == 500


@pytest.mark.parametrize("amount", [0, -5])
def test_topup_and_grant_refuse_non_positive_amounts(amount):
    alice = ProfileFactory()
    before = ledger_rows()
    with pytest.raises(ValueError):
        topup_create(profile=alice, amount=amount, reference="x")
    with pytest.raises(ValueError):
        coins_grant(profile=alice, amount=amount, staff_user=None)
    assert ledger_rows() == before


def test_grant_writes_a_real_transfer():
    alice = ProfileFactory()
    transfer = coins_grant(profile=alice, amount=70, staff_user=None, memo="sorry")
    assert transfer.kind == Transfer.Kind.GRANT
    assert sorted(transfer.entries.values_list("amount", flat=True)) == [-70, 70]
    assert profile_balances(alice)["coins"] == 70
    assert_ledger_sound()


def test_transfer_refuses_unbalanced_legs_and_writes_nothing():
    alice = ProfileFactory(coins=100)
    before = ledger_rows()
    with pytest.raises(ValueError), transaction.atomic():
        transfer_create(
            kind=Transfer.Kind.GRANT,
            reference="bad",
            legs=[(platform_account(Account.Kind.ISSUED), -10), (coins_account(alice), 9)],
        )
    assert ledger_rows() == before
    assert profile_balances(alice)["coins"] == 100


def test_transfer_refuses_overdraft_and_writes_nothing():
    alice, bob = ProfileFactory(coins=100), ProfileFactory()
    before = ledger_rows()
    with pytest.raises(InsufficientBalance), transaction.atomic():
        transfer_create(
            kind=Transfer.Kind.GIFT, reference="over", legs=[(coins_account(alice), -101), (coins_account(bob), 101)]
        )
    assert ledger_rows() == before
    assert profile_balances(alice)["coins"] == 100
    assert profile_balances(bob)["coins"] == 0
    assert_ledger_sound()


def test_database_refuses_a_negative_user_balance_even_when_code_is_bypassed():
    alice = ProfileFactory(coins=5)
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=coins_account(alice).pk).update(balance=-1)
    assert profile_balances(alice)["coins"] == 5


def test_database_refuses_a_zero_entry():
    alice = ProfileFactory(coins=5)
    transfer = Transfer.objects.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        Entry.objects.create(transfer=transfer, account=coins_account(alice), amount=0)


def test_platform_accounts_may_go_negative_but_everything_sums_to_zero():
    for index in range(3):
        ProfileFactory(coins=1_000 * (index + 1))
    assert account_balance(platform_account(Account.Kind.ISSUED)) == -6_000
    assert_ledger_sound()
