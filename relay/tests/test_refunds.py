"""A refunded gift is never delivered to the game: the relay's side of a refund."""

import threading

import pytest
from django.urls import reverse

from gifts.models import FailedDelivery, GiftEvent
from refunds.services import gift_refund
from relay.models import GameDelivery
from relay.services import RedeliverRefused, Relay, failed_delivery_redeliver
from wallets.models import Profile
from wallets.selectors import profile_balances

pytestmark = pytest.mark.django_db


def rows():
    return list(GameDelivery.objects.order_by("seq"))


def test_a_gift_refunded_before_its_delivery_never_reaches_the_game(vendor, send):
    kept, refunded = send(("fan1", 10, 1), ("fan2", 10, 1))

    gift_refund(event=refunded.event, reason="fan asked")
    Relay().deliver_once()

    assert [(row.seq, row.status) for row in rows()] == [(1, "delivered"), (2, "cancelled")]
    [call] = vendor.calls
    assert [item["UserInfo"]["UserId"] for item in call.gift_list] == ["fan1"]
    assert vendor.delivered_msg_ids() == [rows()[0].vendor_msg_id]


def test_a_gift_the_game_refused_can_be_refunded_and_then_not_delivered_again(vendor, send, admin_user):
    vendor.user_results["fan1"] = (10003, "user not in game")
    [outcome] = send(("fan1", 66, 1))
    Relay().deliver_once()
    failed = FailedDelivery.objects.get(source="vendor")
    assert profile_balances(Profile.objects.get(user_id="fan1"))["coins"] == 10_000 - 66

    gift_refund(event=outcome.event, staff_user=admin_user)

    [row] = rows()
    assert row.status == "cancelled"
    failed.refresh_from_db()
    assert failed.resolved_at is not None and failed.resolved_by == admin_user
    assert profile_balances(Profile.objects.get(user_id="fan1"))["coins"] == 10_000
    with pytest.raises(RedeliverRefused):
        failed_delivery_redeliver(failed=failed, staff_user=admin_user)


@pytest.mark.django_db(transaction=True)
def test_a_refund_while_the_call_is_in_flight_stays_cancelled_whatever_the_game_answers(vendor, send):
    [outcome] = send(("fan1", 10, 1))
    vendor.then(delay_s=0.5)
    relay = threading.Thread(target=Relay().deliver_once)
    relay.start()
    while not vendor.in_flight:  # the call has reached the game
        threading.Event().wait(0.01)

    gift_refund(event=GiftEvent.objects.get(pk=outcome.event.pk))
    relay.join(timeout=5)

    # The game took it (a refund cannot call it back), and the answer changed nothing here.
    assert vendor.delivered_msg_ids() == [rows()[0].vendor_msg_id]
    [row] = rows()
    assert (row.status, row.attempts, row.delivered_at) == ("cancelled", 0, None)


def test_staff_refund_a_gift_the_game_refused_from_the_failed_delivery_queue(vendor, send, admin_client):
    vendor.user_results["fan2"] = (10003, "user not in game")
    send(("fan1", 10, 1), ("fan2", 66, 1))
    Relay().deliver_once()
    failed = FailedDelivery.objects.get(source="vendor")

    response = admin_client.post(
        reverse("admin:gifts_faileddelivery_changelist"),
        {"action": "refund", "_selected_action": [failed.pk], "apply": "1", "reason": "the game refused it"},
    )

    assert response.status_code == 302
    assert profile_balances(Profile.objects.get(user_id="fan2"))["coins"] == 10_000
    assert profile_balances(Profile.objects.get(user_id="fan1"))["coins"] == 10_000 - 10
    assert [row.status for row in rows()] == ["delivered", "cancelled"]
    failed.refresh_from_db()
    assert failed.resolved_at is not None
