"""Staff put money right in the admin: payouts, top-up reversals, spending limits, large gifts."""

import logging

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from gifts.services import gift_send
from gifts.tests.factories import GiftFactory, gift_request
from wallets.models import SpendingLimit, Transfer
from wallets.selectors import profile_balances, profile_owed
from wallets.services import topup_create
from wallets.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


def messages_of(client, url) -> str:
    return client.get(url).content.decode()


def test_staff_pay_a_host_out_once_per_reference(staff_client, superuser, viewer, room, rose):
    assert gift_send(gift_request(viewer, room, "m1", num=100)).ok  # 500 coins of earnings
    url = reverse("admin:wallets_profile_changelist")
    form = {"action": "pay_out", "_selected_action": [room.host.pk]}

    assert b"reference" in staff_client.post(url, form).content
    staff_client.post(url, {**form, "apply": "1", "amount": "400", "reference": "bank-9"})
    staff_client.post(url, {**form, "apply": "1", "amount": "400", "reference": "bank-9"})
    staff_client.post(url, {**form, "apply": "1", "amount": "200", "reference": "bank-10"})

    assert profile_balances(room.host)["earnings"] == 100
    payout = Transfer.objects.get(kind=Transfer.Kind.PAYOUT)
    assert payout.created_by == superuser and payout.reference == "payout:staff:bank-9"
    page = messages_of(staff_client, url)
    assert "has 100 coins of earnings" in page


def test_staff_reverse_a_top_up_and_the_wallet_shows_what_is_owed(staff_client, superuser, room, rose):
    fan = ProfileFactory(user_id="fan")
    topup_create(profile=fan, amount=100, reference="card-1")
    assert gift_send(gift_request(fan, room, "m1", num=6)).ok  # 60 spent
    top_up = Transfer.objects.get(reference="topup:card-1")
    url = reverse("admin:wallets_transfer_changelist")
    form = {"action": "reverse_top_up", "_selected_action": [top_up.pk]}

    assert b"reason" in staff_client.post(url, form).content
    staff_client.post(url, {**form, "apply": "1", "reason": "card chargeback"})

    assert profile_balances(fan)["coins"] == 0 and profile_owed(fan) == 60
    chargeback = Transfer.objects.get(kind=Transfer.Kind.CHARGEBACK)
    assert chargeback.created_by == superuser and "card chargeback" in chargeback.memo
    wallets = messages_of(staff_client, reverse("admin:wallets_profile_changelist") + "?q=fan")
    assert "40 coins taken from fan; 60 owed" in wallets


def test_only_top_ups_can_be_reversed(staff_client, viewer, room, rose):
    assert gift_send(gift_request(viewer, room, "m1")).ok
    gift_transfer = Transfer.objects.get(kind=Transfer.Kind.GIFT)

    staff_client.post(
        reverse("admin:wallets_transfer_changelist"),
        {"action": "reverse_top_up", "_selected_action": [gift_transfer.pk], "apply": "1", "reason": "x"},
    )

    assert not Transfer.objects.filter(kind=Transfer.Kind.CHARGEBACK).exists()


def test_staff_set_a_viewers_daily_limit_but_not_the_viewers_own(staff_client, viewer, room, rose):
    response = staff_client.post(
        reverse("admin:wallets_spendinglimit_add"),
        {"profile": viewer.pk, "staff_daily_coins": "20", "daily_coins": "999999"},
    )

    assert response.status_code == 302
    limit = SpendingLimit.objects.get(profile=viewer)
    assert (limit.staff_daily_coins, limit.daily_coins) == (20, None)
    assert gift_send(gift_request(viewer, room, "m1", num=2)).ok
    assert gift_send(gift_request(viewer, room, "m2")).result == 10009


def test_a_large_gift_is_logged_and_listed_under_its_own_filter(settings, staff_client, viewer, room, caplog):
    settings.LARGE_GIFT_COINS = 1_000
    GiftFactory(gift_id="car", name="Car", price=500)
    with caplog.at_level(logging.WARNING, logger="gifts.services"):
        assert gift_send(gift_request(viewer, room, "small", gift_code="car")).ok
        assert gift_send(gift_request(viewer, room, "big", gift_code="car", num=2)).ok

    [warning] = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert warning.getMessage() == f"large gift: 1000 coins from alice in room {room.room_id}"
    listing = staff_client.get(reverse("admin:gifts_giftevent_changelist") + "?large=yes").content.decode()
    assert "1 gift event" in listing


def test_coins_move_only_for_staff_with_the_ledger_permission(client, viewer):
    """Editing people (a nickname, an avatar) is not the right to grant coins or pay earnings out."""
    support = get_user_model().objects.create_user("support", password="pw", is_staff=True)
    support.user_permissions.add(*Permission.objects.filter(codename__in=["view_profile", "change_profile"]))
    client.force_login(support)
    url = reverse("admin:wallets_profile_changelist")

    offered = [name for name, _ in client.get(url).context["action_form"].fields["action"].choices if name]
    assert "grant_coins" not in offered and "pay_out" not in offered
    grant = {"action": "grant_coins", "_selected_action": [viewer.pk], "apply": "1", "amount": "500", "memo": "x"}
    client.post(url, {**grant, "key": "0b6f4d6e-7a53-4a39-9a42-6d1d3f0c2e11"})
    assert profile_balances(viewer)["coins"] == 10_000

    support.user_permissions.add(Permission.objects.get(codename="add_transfer"))
    offered = [name for name, _ in client.get(url).context["action_form"].fields["action"].choices if name]
    assert "grant_coins" in offered and "pay_out" in offered
