"""Daily spending limits: the service's, staff's and the viewer's own, enforced inside the gift transaction."""

import datetime

import pytest
from django.utils import timezone

from gifts.models import FailedDelivery
from gifts.results import Result
from gifts.services import gift_send, gifts_send
from gifts.tests.factories import gift_request
from refunds.services import gift_refund
from wallets.models import SpendingLimit
from wallets.selectors import profile_balances

pytestmark = pytest.mark.django_db


def send(viewer, room, msg_id, num=1):
    return gift_send(gift_request(viewer, room, msg_id, num=num))


def test_the_global_limit_refuses_the_gift_that_would_pass_it_and_charges_nothing(settings, viewer, room, rose):
    settings.GIFT_DAILY_LIMIT = 50  # five roses

    assert send(viewer, room, "m1", num=4).ok
    over = send(viewer, room, "m2", num=2)
    exact = send(viewer, room, "m3", num=1)

    assert over.result == Result.SPENDING_LIMIT
    assert "10 coins left today, 20 needed" in over.message
    assert exact.ok
    assert profile_balances(viewer)["coins"] == 10_000 - 50
    assert send(viewer, room, "m4").result == Result.SPENDING_LIMIT


def test_a_refused_send_over_the_limit_is_final_and_queued_for_staff(settings, viewer, room, rose):
    settings.GIFT_DAILY_LIMIT = 5

    first = send(viewer, room, "m1")
    again = send(viewer, room, "m1")

    assert first.result == again.result == Result.SPENDING_LIMIT and again.replayed
    assert FailedDelivery.objects.get().code == Result.SPENDING_LIMIT


def test_a_batch_counts_its_own_gifts_against_the_limit(settings, viewer, room, rose):
    settings.GIFT_DAILY_LIMIT = 30
    outcomes = gifts_send([gift_request(viewer, room, f"m{n}") for n in range(5)])

    assert [outcome.result for outcome in outcomes] == [0, 0, 0, Result.SPENDING_LIMIT, Result.SPENDING_LIMIT]


def test_a_refunded_gift_no_longer_counts(settings, viewer, room, rose):
    settings.GIFT_DAILY_LIMIT = 20
    first = send(viewer, room, "m1", num=2)
    assert send(viewer, room, "m2").result == Result.SPENDING_LIMIT

    gift_refund(event=first.event)

    assert send(viewer, room, "m3", num=2).ok


def test_yesterdays_gifts_do_not_count_today(settings, viewer, room, rose):
    settings.GIFT_DAILY_LIMIT = 20
    yesterday = send(viewer, room, "m1", num=2).event
    type(yesterday).objects.filter(pk=yesterday.pk).update(created_at=timezone.now() - datetime.timedelta(days=1))

    assert send(viewer, room, "m2", num=2).ok


def test_the_lowest_of_the_services_staffs_and_the_viewers_own_limit_applies(settings, viewer, room, rose):
    settings.GIFT_DAILY_LIMIT = 100
    SpendingLimit.objects.create(profile=viewer, staff_daily_coins=60, daily_coins=30)

    assert send(viewer, room, "m1", num=3).ok
    assert send(viewer, room, "m2").result == Result.SPENDING_LIMIT

    SpendingLimit.objects.filter(profile=viewer).update(daily_coins=None)
    assert send(viewer, room, "m3", num=3).ok
    assert send(viewer, room, "m4").result == Result.SPENDING_LIMIT


# --- the viewer's own limit through /api/me/limits/ -------------------------------------------------


@pytest.fixture
def api(viewer, client_for):
    return client_for(viewer)


def test_without_limits_nothing_is_in_force(api):
    limits = api.get("/api/me/limits/").json()

    assert limits == {
        "daily_coins": None,
        "pending": None,
        "staff_daily_coins": None,
        "everyone_daily_coins": None,
        "effective_daily_coins": None,
        "spent_today": 0,
        "left_today": None,
    }


def test_a_viewers_own_limit_applies_at_once_and_the_api_shows_what_is_left(api, viewer, room, rose):
    assert send(viewer, room, "m1", num=2).ok

    response = api.put("/api/me/limits/", {"daily_coins": 50}, format="json")

    assert response.status_code == 200
    limits = response.json()
    assert (limits["daily_coins"], limits["effective_daily_coins"], limits["spent_today"], limits["left_today"]) == (
        50,
        50,
        20,
        30,
    )
    sent = api.post(f"/api/rooms/{room.room_id}/gifts/", {"gift_id": "rose", "msg_id": "m2", "num": 4}, format="json")
    assert sent.status_code == 422 and sent.json()["code"] == 10009


def test_a_raise_waits_24_hours_and_a_cut_applies_at_once(api, viewer, room, rose):
    api.put("/api/me/limits/", {"daily_coins": 20}, format="json")

    raised = api.put("/api/me/limits/", {"daily_coins": 100}, format="json").json()

    assert raised["daily_coins"] == 20 and raised["effective_daily_coins"] == 20
    assert raised["pending"]["daily_coins"] == 100
    pending_from = datetime.datetime.fromisoformat(raised["pending"]["from"])
    assert datetime.timedelta(hours=23, minutes=59) < pending_from - timezone.now() <= datetime.timedelta(hours=24)
    assert send(viewer, room, "m1", num=3).result == Result.SPENDING_LIMIT

    # a day later the raise is in force
    SpendingLimit.objects.filter(profile=viewer).update(raised_from=timezone.now() - datetime.timedelta(seconds=1))
    later = api.get("/api/me/limits/").json()
    assert (later["daily_coins"], later["pending"]) == (100, None)
    assert send(viewer, room, "m2", num=3).ok

    # a cut below the current limit applies at once and drops any raise still waiting
    api.put("/api/me/limits/", {"daily_coins": 500}, format="json")
    cut = api.put("/api/me/limits/", {"daily_coins": 10}, format="json").json()
    assert (cut["daily_coins"], cut["pending"]) == (10, None)
    assert send(viewer, room, "m3").result == Result.SPENDING_LIMIT


def test_removing_ones_own_limit_is_a_raise(api):
    api.put("/api/me/limits/", {"daily_coins": 20}, format="json")

    removed = api.put("/api/me/limits/", {"daily_coins": None}, format="json").json()

    assert removed["daily_coins"] == 20
    assert removed["pending"]["daily_coins"] is None


@pytest.mark.parametrize(
    "body",
    [{}, {"daily_coins": -1}, {"daily_coins": -5}, {"daily_coins": "10"}, {"daily_coins": 1.5}, {"daily_coins": True}],
)
def test_a_bad_limit_is_7200003_and_changes_nothing(api, viewer, body):
    response = api.put("/api/me/limits/", body, format="json")

    assert response.status_code == 400 and response.json()["code"] == 7200003
    assert not SpendingLimit.objects.filter(profile=viewer).exists()


def test_limits_need_a_signed_in_viewer(api_client):
    assert api_client.get("/api/me/limits/").status_code == 401
    assert api_client.put("/api/me/limits/", {"daily_coins": 5}, format="json").status_code == 401


def test_asking_for_the_same_raise_again_keeps_its_time(api, viewer):
    api.put("/api/me/limits/", {"daily_coins": 20}, format="json")
    first = api.put("/api/me/limits/", {"daily_coins": 100}, format="json").json()["pending"]["from"]

    again = api.put("/api/me/limits/", {"daily_coins": 100}, format="json").json()["pending"]["from"]

    assert again == first


def test_a_limit_of_zero_stops_spending_for_the_day(api, viewer, room, rose):
    assert api.put("/api/me/limits/", {"daily_coins": 0}, format="json").json()["effective_daily_coins"] == 0

    assert send(viewer, room, "m1").result == Result.SPENDING_LIMIT


def test_staff_saving_a_limit_keep_the_viewers_own_change(client, viewer, api):
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    client.force_login(get_user_model().objects.create_superuser("boss", "boss@example.com", "pw"))
    limit = SpendingLimit.objects.create(profile=viewer, staff_daily_coins=500)
    page = client.get(reverse("admin:wallets_spendinglimit_change", args=[limit.pk]))
    assert page.status_code == 200
    api.put("/api/me/limits/", {"daily_coins": 30}, format="json")  # while the page is open

    client.post(reverse("admin:wallets_spendinglimit_change", args=[limit.pk]), {"staff_daily_coins": "400"})

    limit.refresh_from_db()
    assert (limit.staff_daily_coins, limit.daily_coins) == (400, 30)
    assert (
        client.post(reverse("admin:wallets_spendinglimit_delete", args=[limit.pk]), {"post": "yes"}).status_code == 403
    )
