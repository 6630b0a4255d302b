"""Staff see every game delivery and the relay's health, and put a refused gift back on its way."""

import pytest
from django.urls import reverse

from gifts.models import FailedDelivery
from relay.models import GameDelivery, GameReport, RelayHealth
from relay.services import Relay

pytestmark = pytest.mark.django_db


@pytest.fixture
def refused(vendor, send):
    """fan1's gift, paid for and refused by the game (user not in game)."""
    vendor.user_results["fan1"] = (10003, "user not in game")
    send(("fan1", 10, 1))
    Relay().deliver_once()
    del vendor.user_results["fan1"]
    return GameDelivery.objects.get()


def test_the_delivery_list_shows_status_attempts_vendor_code_and_request_id(staff_client, refused):
    page = staff_client.get(reverse("admin:relay_gamedelivery_changelist")).content.decode()
    for shown in ("failed", refused.vendor_msg_id, refused.request_id, "10003", "user not in game"):
        assert shown in page
    detail = staff_client.get(reverse("admin:relay_gamedelivery_change", args=[refused.pk]))
    assert "&quot;GiftId&quot;: &quot;g1&quot;" in detail.content.decode()


def test_deliver_again_from_the_delivery_list_sends_it_under_a_new_msg_id(staff_client, refused, vendor):
    response = staff_client.post(
        reverse("admin:relay_gamedelivery_changelist"),
        {"action": "deliver_again", "_selected_action": [refused.pk]},
        follow=True,
    )
    assert "1 deliveries queued for the game again" in response.content.decode()
    Relay().deliver_once()
    delivery = GameDelivery.objects.get()
    assert delivery.status == "delivered" and delivery.vendor_msg_id != refused.vendor_msg_id


def test_deliver_again_from_the_failed_delivery_page_resolves_the_row(staff_client, refused):
    failed = FailedDelivery.objects.get(source="vendor")
    page = staff_client.get(reverse("admin:gifts_faileddelivery_change", args=[failed.pk])).content.decode()
    assert "Deliver again to the game" in page and "Re-send as a new gift" not in page

    staff_client.post(reverse("admin:gifts_faileddelivery_deliver_again", args=[failed.pk]))

    failed.refresh_from_db()
    assert failed.resolved_at is not None
    assert GameDelivery.objects.get().status == "pending"


def test_re_send_refuses_a_vendor_failure_so_the_sender_is_not_charged_twice(staff_client, refused):
    failed = FailedDelivery.objects.get(source="vendor")
    response = staff_client.post(reverse("admin:gifts_faileddelivery_resend", args=[failed.pk]), follow=True)
    assert "deliver it again instead" in response.content.decode()
    assert GameDelivery.objects.count() == 1 and GameDelivery.objects.get().status == "failed"


def test_the_health_page_shows_a_pause_and_staff_resume_it(staff_client, vendor, send):
    send(("fan1", 10, 1))
    vendor.then(code=7203001)
    Relay().deliver_once()

    page = staff_client.get(reverse("admin:relay_relayhealth_changelist")).content.decode()
    assert "paused until" in page and "7203001" in page

    staff_client.post(
        reverse("admin:relay_relayhealth_changelist"),
        {"action": "resume", "_selected_action": [RelayHealth.ID]},
    )
    assert RelayHealth.objects.get().paused_until is None
    Relay().deliver_once()
    assert GameDelivery.objects.get().status == "delivered"


def test_the_health_page_exists_before_any_relay_ran(staff_client):
    page = staff_client.get(reverse("admin:relay_relayhealth_changelist")).content.decode()
    assert "running" in page


def test_nobody_can_edit_or_delete_deliveries_or_reports(staff_client, refused):
    for url in (
        reverse("admin:relay_gamedelivery_delete", args=[refused.pk]),
        reverse("admin:relay_gamedelivery_add"),
    ):
        assert staff_client.get(url).status_code == 403
    assert staff_client.get(reverse("admin:relay_gamereport_changelist")).status_code == 200
    assert not GameReport.objects.exists()
