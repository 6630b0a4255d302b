"""Staff refund gifts from the admin: from gift events and from the failed-delivery queue."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from gifts.models import FailedDelivery, GiftEvent
from gifts.services import gift_send
from gifts.tests.factories import gift_request
from refunds.models import Refund
from wallets.models import Transfer
from wallets.selectors import profile_balances

pytestmark = pytest.mark.django_db


@pytest.fixture
def gifts(viewer, room, rose):
    return [gift_send(gift_request(viewer, room, f"m{n}", num=n)).event for n in (1, 2)]


def refund_action(client, url, selected, **form):
    return client.post(url, {"action": "refund", "_selected_action": selected, **form})


def test_refunding_gift_events_asks_why_then_refunds_each_once(staff_client, superuser, viewer, gifts):
    url = reverse("admin:gifts_giftevent_changelist")
    selected = [event.pk for event in gifts]

    asked = refund_action(staff_client, url, selected)
    assert asked.status_code == 200 and b"reason" in asked.content
    assert not Refund.objects.exists()

    done = refund_action(staff_client, url, selected, apply="1", reason="charged twice")
    assert done.status_code == 302
    assert profile_balances(viewer)["coins"] == 10_000
    assert Refund.objects.filter(requested_by=superuser, reason="charged twice", source="staff").count() == 2
    assert set(Transfer.objects.filter(kind="refund").values_list("created_by", flat=True)) == {superuser.pk}

    again = refund_action(staff_client, url, selected, apply="1", reason="again")
    assert again.status_code == 302
    page = staff_client.get(url)
    assert b"already refunded" in page.content
    assert Refund.objects.count() == 2


def test_a_refund_without_a_reason_is_not_made(staff_client, gifts):
    response = refund_action(
        staff_client, reverse("admin:gifts_giftevent_changelist"), [gifts[0].pk], apply="1", reason=""
    )

    assert response.status_code == 200  # the form again, with its error
    assert not Refund.objects.exists()


def test_selecting_a_reversal_refunds_nothing_more(staff_client, viewer, gifts):
    url = reverse("admin:gifts_giftevent_changelist")
    refund_action(staff_client, url, [gifts[0].pk], apply="1", reason="first")
    reversal = GiftEvent.objects.get(kind="reversal")

    refund_action(staff_client, url, [reversal.pk], apply="1", reason="reversal")

    assert Refund.objects.count() == 1 and profile_balances(viewer)["coins"] == 10_000 - 20


def test_staff_without_the_refund_permission_cannot_refund(client, gifts):
    clerk = get_user_model().objects.create_user("clerk", password="pw", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_giftevent"))
    client.force_login(clerk)

    response = refund_action(client, reverse("admin:gifts_giftevent_changelist"), [gifts[0].pk], apply="1", reason="x")

    assert response.status_code in (200, 302)
    assert not Refund.objects.exists()


def test_a_billing_failure_has_nothing_to_refund(staff_client, viewer, room, rose):
    refused = gift_send(gift_request(viewer, room, "poor", num=5_000))  # 50,000 coins
    assert refused.result == 10007
    failed = FailedDelivery.objects.get()

    response = refund_action(
        staff_client, reverse("admin:gifts_faileddelivery_changelist"), [failed.pk], apply="1", reason="x"
    )

    assert response.status_code == 302
    assert b"Nothing to refund" in staff_client.get(reverse("admin:gifts_faileddelivery_changelist")).content
    assert not Refund.objects.exists()


def test_the_refunds_list_shows_who_refunded_what_and_why(staff_client, gifts):
    refund_action(
        staff_client, reverse("admin:gifts_giftevent_changelist"), [gifts[1].pk], apply="1", reason="wrong room"
    )

    page = staff_client.get(reverse("admin:refunds_refund_changelist"))

    assert page.status_code == 200
    assert b"wrong room" in page.content and b"alice" in page.content
    refund = Refund.objects.get()
    assert staff_client.post(reverse("admin:refunds_refund_change", args=[refund.pk]), {}).status_code == 403
    assert (
        staff_client.post(reverse("admin:refunds_refund_delete", args=[refund.pk]), {"post": "yes"}).status_code == 403
    )


def test_select_all_refunds_every_row_the_list_matches_not_just_the_page(staff_client, viewer, room, rose):
    from gifts.services import gifts_send

    gifts_send([gift_request(viewer, room, f"bulk{n}") for n in range(101)])  # the list shows 100 a page
    url = reverse("admin:gifts_giftevent_changelist")
    first_page = [GiftEvent.objects.order_by("-pk").first().pk]
    form = {"action": "refund", "_selected_action": first_page, "select_across": "1"}

    asked = staff_client.post(url, form)
    assert asked.status_code == 200 and b'name="select_across" value="1"' in asked.content
    staff_client.post(url, {**form, "apply": "1", "reason": "bulk mistake"})

    assert Refund.objects.count() == 101
    assert profile_balances(viewer)["coins"] == 10_000
