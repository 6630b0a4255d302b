"""CSV exports from the admin: what staff download is what the books say."""

import csv
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from gifts.models import FailedDelivery, GiftEvent
from gifts.services import gift_send
from gifts.tests.factories import gift_request
from refunds.services import gift_refund
from wallets.models import Transfer
from wallets.services import payout_create
from wallets.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy_day(viewer, room, rose):
    """alice sends 3 roses and 5 roses; the second gift is refunded; the host is paid out 5."""
    gift_send(gift_request(viewer, room, "m1", num=3))
    second = gift_send(gift_request(viewer, room, "m2", num=5)).event
    gift_refund(event=second, reason="mistake")
    payout_create(profile=room.host, amount=5, reference="bank-1")
    gift_send(gift_request(viewer, room, "poor", num=100_000))  # refused: 10007
    return room


def export(client, list_name, selected, action="export_csv") -> list[dict[str, str]]:
    response = client.post(reverse(f"admin:{list_name}_changelist"), {"action": action, "_selected_action": selected})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment; filename=")
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_gift_events_export_with_the_reversal(staff_client, busy_day):
    rows = export(staff_client, "gifts_giftevent", list(GiftEvent.objects.values_list("pk", flat=True)))

    assert [(row["seq"], row["kind"], row["reverses_seq"], row["msg_id"], row["coins"]) for row in rows] == [
        ("1", "gift", "", "m1", "30"),
        ("2", "gift", "", "m2", "50"),
        ("3", "reversal", "2", "m2", "50"),
    ]
    assert rows[0]["sender"] == "alice" and rows[0]["transfer"] == f"gift:user:{GiftEvent.objects.first().sender_id}:m1"


def test_transfers_export_lists_every_leg(staff_client, busy_day):
    rows = export(staff_client, "wallets_transfer", list(Transfer.objects.values_list("pk", flat=True)))

    kinds = [row["kind"] for row in rows]
    assert kinds == ["top_up", "gift", "gift", "refund", "payout"]
    refund = rows[3]
    assert "alice:coins +50" in refund["entries"] and "hostess:earnings -25" in refund["entries"]
    assert "mistake" in refund["memo"]


def test_failed_deliveries_export(staff_client, busy_day):
    rows = export(staff_client, "gifts_faileddelivery", list(FailedDelivery.objects.values_list("pk", flat=True)))

    assert [(row["msg_id"], row["code"], row["source"], row["user_id"]) for row in rows] == [
        ("poor", "10007", "viewer", "alice")
    ]


def test_host_statements_per_host_and_day(staff_client, busy_day):
    other_host = ProfileFactory(user_id="quiet-host")

    rows = export(staff_client, "wallets_profile", [busy_day.host.pk, other_host.pk], action="export_host_statements")

    today = timezone.now().date().isoformat()
    assert rows == [
        {
            "host": "hostess",
            "day": today,
            "gifts": "2",
            "coins": "80",
            "earnings": "40",
            "refunds": "25",
            "payouts": "5",
            "earnings_after": "10",
        }
    ]


def test_a_nickname_that_looks_like_a_formula_is_exported_as_text(staff_client, room, rose):
    schemer = ProfileFactory(user_id="=cmd", coins=100)
    gift_send(gift_request(schemer, room, "m1"))

    [row] = export(staff_client, "gifts_giftevent", list(GiftEvent.objects.values_list("pk", flat=True)))

    assert row["sender"] == "'=cmd"
