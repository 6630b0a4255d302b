"""`manage.py ledger_check` passes a sound ledger and names the rows of a broken one."""

import io

import pytest
from django.core.management import call_command

from gifts.models import GiftEvent
from gifts.services import gift_send
from gifts.tests.factories import gift_request
from wallets.models import Account, Entry, Transfer
from wallets.services import platform_account

pytestmark = pytest.mark.django_db


def ledger_check() -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("ledger_check", stdout=out, stderr=err)
    except SystemExit as exit_:
        return exit_.code, out.getvalue() + err.getvalue()
    return 0, out.getvalue() + err.getvalue()


@pytest.fixture
def paid_gift(viewer, room, rose):
    outcome = gift_send(gift_request(viewer, room, "m1"))
    assert outcome.ok
    return outcome.event


def test_a_sound_ledger_passes_every_check(paid_gift):
    code, output = ledger_check()
    assert code == 0, output
    assert "ledger_check: all 11 checks passed" in output
    assert "ok   every gift event has its transfer, debiting the sender what it cost (1 gift events)" in output


def test_a_balance_off_its_entries_is_named(paid_gift, viewer):
    coins = Account.objects.get(profile=viewer, kind=Account.Kind.COINS)
    Account.objects.filter(pk=coins.pk).update(balance=coins.balance + 7)

    code, output = ledger_check()

    assert code == 1
    assert "FAIL every user account's balance is the sum of its entries" in output
    assert f"account #{coins.pk}" in output
    assert "FAIL all balances sum to 0" in output and "sum of all balances is +7" in output


def test_an_account_with_a_balance_and_no_entries_at_all_is_named(room):
    host_coins = Account.objects.get(profile=room.host, kind=Account.Kind.COINS)
    Account.objects.filter(pk=host_coins.pk).update(balance=5)

    code, output = ledger_check()

    assert code == 1 and f"account #{host_coins.pk}" in output


def test_an_unbalanced_transfer_and_one_without_entries_are_named(db):
    lopsided = Transfer.objects.create(kind=Transfer.Kind.GRANT, reference="broken-1")
    Entry.objects.create(transfer=lopsided, account=platform_account(Account.Kind.ISSUED), amount=-3)
    empty = Transfer.objects.create(kind=Transfer.Kind.GRANT, reference="broken-2")

    code, output = ledger_check()

    assert code == 1
    assert f"FAIL every transfer's entries sum to 0 (2 transfers)\n       transfer #{lopsided.pk}" in output
    assert f"FAIL every transfer has entries (2 transfers)\n       transfer #{empty.pk}" in output


def test_a_gift_transfer_without_its_event_and_an_event_not_paid_by_its_sender_are_named(paid_gift, viewer):
    orphan = Transfer.objects.create(kind=Transfer.Kind.GIFT, reference="gift:orphan")
    Entry.objects.create(transfer=orphan, account=platform_account(Account.Kind.ISSUED), amount=-1)
    Entry.objects.create(transfer=orphan, account=platform_account(Account.Kind.REVENUE), amount=1)
    # An event whose transfer is a top-up: nothing in it debits the sender what the gift cost.
    top_up = Transfer.objects.filter(kind=Transfer.Kind.TOP_UP).first()
    unpaid = GiftEvent.objects.create(
        room=paid_gift.room,
        seq=99,
        msg_id="unpaid",
        sender=viewer,
        receiver=paid_gift.receiver,
        gift=paid_gift.gift,
        value=1,
        num=1,
        count=1,
        coins=10,
        transfer=top_up,
    )

    code, output = ledger_check()

    assert code == 1
    assert f"FAIL every gift transfer has its gift event (2 gift transfers)\n       transfer #{orphan.pk}" in output
    assert f"gift event #{unpaid.pk}" in output and f"gift event #{paid_gift.pk}" not in output


def test_a_refunded_gift_passes_and_a_reversal_that_gives_back_the_wrong_coins_is_named(paid_gift, viewer):
    from refunds.services import gift_refund

    reversal = gift_refund(event=paid_gift).refund.reversal
    code, output = ledger_check()
    assert code == 0, output
    assert "ok   every refund reverses its own gift, crediting its sender what it cost (1 refunds)" in output

    GiftEvent.objects.filter(pk=reversal.pk).update(coins=reversal.coins + 1)
    orphan = Transfer.objects.create(kind=Transfer.Kind.REFUND, reference="refund:orphan")
    Entry.objects.create(transfer=orphan, account=platform_account(Account.Kind.REVENUE), amount=-1)
    Entry.objects.create(transfer=orphan, account=Account.objects.get(profile=viewer, kind="coins"), amount=1)
    Account.objects.filter(profile=viewer, kind="coins").update(
        balance=Account.objects.get(profile=viewer, kind="coins").balance + 1
    )

    code, output = ledger_check()

    assert code == 1
    assert (
        "FAIL every refund reverses its own gift, crediting its sender what it cost (1 refunds)\n"
        f"       reversal event #{reversal.pk}" in output
    )
    assert (
        f"FAIL every refund transfer has its reversal event (2 refund transfers)\n       transfer #{orphan.pk}"
        in output
    )
