"""The failed-delivery queue as staff work it in the admin, and server apps with their secrets."""

import re
from html.parser import HTMLParser

import pytest
from django.contrib.admin.sites import site
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from gifts.models import FailedDelivery, GiftEvent, ServerApp
from gifts.services import GiftRequest, gift_send, room_go_off_air
from gifts.tests.factories import GiftFactory, RoomFactory
from gifts.tests.test_server_api import APP_ID, SECRET, call, item
from wallets.selectors import profile_balances
from wallets.services import coins_grant
from wallets.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:gifts_faileddelivery_changelist"
CHANGELIST_APPS = "admin:gifts_serverapp_changelist"


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def app(db):
    return ServerApp.objects.create(app_id=APP_ID, name="business", secret=SECRET)


@pytest.fixture
def chat(db):
    GiftFactory(gift_id="rose", price=10)
    return RoomFactory(room_id="chat", host=ProfileFactory(user_id="anchor"))


@pytest.fixture
def poor_fan_failure(client, app, chat):
    """A fan with 5 coins whose 2 roses (20 coins) came in through the server API and failed with 10007."""
    ProfileFactory(user_id="fan", coins=5)
    body = {"RoomId": "chat", "GiftList": [item("m-poor", "fan", gift_id="rose", value=1, num=2)]}
    assert call(client, body)["Data"]["Results"][0]["Result"] == 10007
    return FailedDelivery.objects.get(msg_id="m-poor")


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


def test_a_viewer_api_failure_is_queued_with_who_where_and_what(chat, client_for):
    viewer = ProfileFactory(user_id="alice", coins=5)
    response = client_for(viewer).post(
        "/api/rooms/chat/gifts/", {"gift_id": "rose", "msg_id": "v1", "num": 2}, format="json"
    )
    assert response.status_code == 422
    failed = FailedDelivery.objects.get(msg_id="v1")
    assert (failed.source, failed.user_code, failed.room.room_id, failed.code) == ("viewer", "alice", "chat", 10007)
    assert (failed.gift_code, failed.value, failed.num) == ("rose", 1, 2)
    assert failed.request_id and "insufficient balance" in failed.message
    assert failed.raw_item == {"gift_id": "rose", "msg_id": "v1", "num": 2}


def test_staff_filter_and_search_the_queue(staff_client, poor_fan_failure, chat):
    other_room = RoomFactory(room_id="other")
    viewer = ProfileFactory(user_id="bob", coins=100)
    gift_send(
        GiftRequest(
            scope=f"user:{viewer.pk}",
            msg_id="m-unknown",
            sender=viewer,
            room=other_room,
            game_session=None,
            gift_code="nope",
            value=1,
            num=1,
        )
    )
    url = reverse(CHANGELIST)

    def listed(**query):
        response = staff_client.get(url, query)
        assert response.status_code == 200
        return {row.msg_id for row in response.context["cl"].result_list}

    assert listed() == {"m-poor", "m-unknown"}
    assert listed(code=10004) == {"m-unknown"}
    assert listed(room__id__exact=chat.pk) == {"m-poor"}
    assert listed(mini_game_code="") == {"m-poor", "m-unknown"}
    assert listed(status="open") == {"m-poor", "m-unknown"}
    assert listed(status="resolved") == set()
    assert listed(q="m-poor") == {"m-poor"}
    assert listed(q="bob") == {"m-unknown"}
    midnight = timezone.localtime(poor_fan_failure.created_at).replace(hour=0, minute=0, second=0, microsecond=0)
    assert listed(created_at__gte=str(midnight)) == {"m-poor", "m-unknown"}
    assert listed(created_at__lt=str(midnight)) == set()


def test_the_detail_page_shows_the_raw_item_and_the_actions(staff_client, poor_fan_failure):
    response = staff_client.get(reverse("admin:gifts_faileddelivery_change", args=[poor_fan_failure.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "&quot;MsgId&quot;: &quot;m-poor&quot;" in page  # the raw item, pretty-printed
    assert "Re-send as a new gift" in page and "Mark resolved" in page
    # nothing on the page can change the row itself
    assert 'name="_save"' not in page


def test_the_detail_page_buttons_post_to_their_actions(staff_client, poor_fan_failure):
    """A browser ignores a form inside another (the admin's page is one form): each button must
    name its own URL, or it posts the page's form, which staff may not change."""
    page = staff_client.get(reverse("admin:gifts_faileddelivery_change", args=[poor_fan_failure.pk]))
    buttons = submit_targets(page.content.decode())
    assert buttons["Re-send as a new gift (new MsgId; the sender pays)"] == reverse(
        "admin:gifts_faileddelivery_resend", args=[poor_fan_failure.pk]
    )
    assert buttons["Mark resolved"] == reverse("admin:gifts_faileddelivery_resolve", args=[poor_fan_failure.pk])


def submit_targets(html: str) -> dict[str, str]:
    """{button label: the URL it posts to}, with forms nested in forms ignored as browsers do."""

    class Page(HTMLParser):
        def __init__(self):
            super().__init__()
            self.form_action: str | None = None  # the open form's action; a nested <form> is ignored
            self.label: tuple[str, str] | None = None  # a <button> being read: its target, its text so far
            self.targets: dict[str, str] = {}

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "form" and self.form_action is None:
                self.form_action = attrs.get("action") or ""
            elif tag == "input" and attrs.get("type") == "submit" and self.form_action is not None:
                self.targets[attrs.get("value", "")] = attrs.get("formaction") or self.form_action
            elif tag == "button" and self.form_action is not None:
                self.label = (attrs.get("formaction") or self.form_action, "")

        def handle_data(self, data):
            if self.label is not None:
                self.label = (self.label[0], self.label[1] + data)

        def handle_endtag(self, tag):
            if tag == "form":
                self.form_action = None  # the first </form> closes the one open form
            elif tag == "button" and self.label is not None:
                self.targets[self.label[1].strip()] = self.label[0]
                self.label = None

    parser = Page()
    parser.feed(html)
    return parser.targets


def test_mark_resolved_records_who_and_when_once(staff_client, superuser, poor_fan_failure):
    response = staff_client.post(
        reverse(CHANGELIST),
        {"action": "mark_resolved", "_selected_action": [poor_fan_failure.pk]},
        follow=True,
    )
    assert "1 failed deliveries marked resolved." in messages_of(response)
    poor_fan_failure.refresh_from_db()
    assert poor_fan_failure.resolved_by == superuser and poor_fan_failure.resolved_at is not None
    first_mark = poor_fan_failure.resolved_at

    other = get_user_model().objects.create_superuser("other", "o@example.com", "pw")
    staff_client.force_login(other)
    staff_client.post(reverse(CHANGELIST), {"action": "mark_resolved", "_selected_action": [poor_fan_failure.pk]})
    poor_fan_failure.refresh_from_db()
    assert (poor_fan_failure.resolved_by, poor_fan_failure.resolved_at) == (superuser, first_mark)


def test_resend_creates_a_new_gift_with_a_new_msg_id_and_marks_the_row(staff_client, superuser, poor_fan_failure):
    fan = poor_fan_failure.sender
    coins_grant(profile=fan, amount=100, staff_user=superuser, memo="make good")

    response = staff_client.post(
        reverse(CHANGELIST), {"action": "resend", "_selected_action": [poor_fan_failure.pk]}, follow=True
    )

    poor_fan_failure.refresh_from_db()
    new_msg_id = poor_fan_failure.resent_msg_id
    assert new_msg_id and new_msg_id != "m-poor"
    event = GiftEvent.objects.get(msg_id=new_msg_id)
    assert (event.sender, event.gift.gift_id, event.num, event.coins) == (fan, "rose", 2, 20)
    assert profile_balances(fan)["coins"] == 105 - 20
    assert poor_fan_failure.resend_result == 0
    assert poor_fan_failure.resolved_by == superuser and poor_fan_failure.resolved_at is not None
    [message] = messages_of(response)
    assert f"re-sent as {new_msg_id}, delivered" in message

    # a second click never sends the gift twice
    again = staff_client.post(
        reverse(CHANGELIST), {"action": "resend", "_selected_action": [poor_fan_failure.pk]}, follow=True
    )
    assert "already re-sent" in messages_of(again)[0]
    assert GiftEvent.objects.count() == 1
    assert profile_balances(fan)["coins"] == 85


def test_a_resend_that_fails_again_says_why_and_can_be_retried(staff_client, superuser, poor_fan_failure):
    url = reverse("admin:gifts_faileddelivery_resend", args=[poor_fan_failure.pk])
    response = staff_client.post(url, follow=True)

    poor_fan_failure.refresh_from_db()
    assert poor_fan_failure.resend_result == 10007 and poor_fan_failure.resolved_at is None
    first_try = poor_fan_failure.resent_msg_id
    assert re.search(r"failed with 10007: insufficient balance", messages_of(response)[0])
    assert FailedDelivery.objects.get(msg_id=first_try).source == "staff"

    coins_grant(profile=poor_fan_failure.sender, amount=100, staff_user=superuser)
    staff_client.post(url, follow=True)
    poor_fan_failure.refresh_from_db()
    assert poor_fan_failure.resend_result == 0 and poor_fan_failure.resent_msg_id != first_try
    assert GiftEvent.objects.filter(msg_id=poor_fan_failure.resent_msg_id).count() == 1


def test_resending_a_failed_resend_pays_the_gift_once(staff_client, superuser, poor_fan_failure):
    """The re-send's own failure is queued too; re-sending it and then the original must not pay twice."""
    fan = poor_fan_failure.sender
    resend_url = "admin:gifts_faileddelivery_resend"
    staff_client.post(reverse(resend_url, args=[poor_fan_failure.pk]), follow=True)  # 10007 again
    poor_fan_failure.refresh_from_db()
    second_failure = FailedDelivery.objects.get(msg_id=poor_fan_failure.resent_msg_id)
    coins_grant(profile=fan, amount=100, staff_user=superuser)

    staff_client.post(reverse(resend_url, args=[second_failure.pk]), follow=True)
    again = staff_client.post(reverse(resend_url, args=[poor_fan_failure.pk]), follow=True)

    assert "already re-sent" in messages_of(again)[0]
    assert GiftEvent.objects.count() == 1
    assert profile_balances(fan)["coins"] == 105 - 20
    poor_fan_failure.refresh_from_db()
    second_failure.refresh_from_db()
    assert poor_fan_failure.resend_result == 0
    assert poor_fan_failure.resolved_at is not None and second_failure.resolved_at is not None


def test_a_resend_row_paid_on_its_own_keeps_its_original_from_being_paid_again(
    staff_client, superuser, poor_fan_failure
):
    """A re-send's row that was itself re-sent and paid before re-sends went through their original."""
    url = reverse("admin:gifts_faileddelivery_resend", args=[poor_fan_failure.pk])
    staff_client.post(url, follow=True)  # 10007 again, queued as a row of its own
    poor_fan_failure.refresh_from_db()
    FailedDelivery.objects.filter(msg_id=poor_fan_failure.resent_msg_id).update(resend_result=0)
    coins_grant(profile=poor_fan_failure.sender, amount=100, staff_user=superuser)

    assert "already re-sent" in messages_of(staff_client.post(url, follow=True))[0]
    assert GiftEvent.objects.count() == 0


def test_a_gift_paid_after_its_in_flight_answer_is_not_resent(staff_client, client, app, chat):
    """A retry answered 10006 is queued; the first attempt then commits. Re-sending it would charge twice."""
    fan = ProfileFactory(user_id="fan", coins=100)
    body = {"RoomId": "chat", "GiftList": [item("m-slow", "fan", gift_id="rose", value=1, num=1)]}
    assert call(client, body)["Data"]["Results"][0]["Result"] == 0
    # What the retry that met the first attempt in flight left in the queue.
    in_flight = FailedDelivery.objects.create(
        source=FailedDelivery.Source.SERVER_API, request_id="r-retry", app=app, sender=fan, user_code="fan",
        room=chat, msg_id="m-slow", gift_code="rose", value=1, num=1, code=10006,
        message="MsgId is being processed; retry later",
    )  # fmt: skip

    response = staff_client.post(reverse("admin:gifts_faileddelivery_resend", args=[in_flight.pk]), follow=True)

    assert "was paid after all (room seq 1)" in messages_of(response)[0]
    assert GiftEvent.objects.count() == 1
    assert profile_balances(fan)["coins"] == 90


def test_a_resend_whose_outcome_was_lost_is_repeated_under_its_msg_id(staff_client, superuser, app, poor_fan_failure):
    """The first click's gift committed but its result was never recorded (its process died, or it is
    still running): a second click repeats that MsgId, which answers the gift it already paid."""
    fan = poor_fan_failure.sender
    coins_grant(profile=fan, amount=100, staff_user=superuser)
    first_try = f"resend-{poor_fan_failure.pk}-cut-off"
    FailedDelivery.objects.filter(pk=poor_fan_failure.pk).update(resent_msg_id=first_try, resend_result=None)
    paid = gift_send(
        GiftRequest(
            scope=f"app:{app.app_id}", msg_id=first_try, sender=fan, room=poor_fan_failure.room,
            game_session=None, gift_code="rose", value=1, num=2, app=app,
        )
    )  # fmt: skip
    assert paid.ok

    response = staff_client.post(reverse("admin:gifts_faileddelivery_resend", args=[poor_fan_failure.pk]), follow=True)

    assert f"re-sent as {first_try}, delivered" in messages_of(response)[0]
    assert GiftEvent.objects.count() == 1
    assert profile_balances(fan)["coins"] == 105 - 20
    poor_fan_failure.refresh_from_db()
    assert (poor_fan_failure.resent_msg_id, poor_fan_failure.resend_result) == (first_try, 0)


def test_resend_into_a_room_that_is_off_air_sends_nothing(staff_client, poor_fan_failure, chat):
    room_go_off_air(room=chat)
    response = staff_client.post(reverse("admin:gifts_faileddelivery_resend", args=[poor_fan_failure.pk]), follow=True)
    assert "not re-sent" in messages_of(response)[0] and "not live" in messages_of(response)[0]
    poor_fan_failure.refresh_from_db()
    assert poor_fan_failure.resent_msg_id == "" and poor_fan_failure.resend_result is None
    assert GiftEvent.objects.count() == 0


def test_row_actions_need_post_and_the_change_permission(client, poor_fan_failure):
    viewer_staff = get_user_model().objects.create_user("reader", password="pw", is_staff=True)
    viewer_staff.user_permissions.add(Permission.objects.get(codename="view_faileddelivery"))
    client.force_login(viewer_staff)

    page = client.get(reverse("admin:gifts_faileddelivery_change", args=[poor_fan_failure.pk]))
    assert page.status_code == 200 and "Re-send as a new gift" not in page.content.decode()
    listing = client.get(reverse(CHANGELIST))
    # only the export is offered to a reader: nothing that changes a row
    offered = [name for name, _ in listing.context["action_form"].fields["action"].choices if name]
    assert listing.status_code == 200 and offered == ["export_csv"]
    assert client.post(reverse("admin:gifts_faileddelivery_resend", args=[poor_fan_failure.pk])).status_code == 403
    assert client.post(reverse("admin:gifts_faileddelivery_resolve", args=[poor_fan_failure.pk])).status_code == 403
    poor_fan_failure.refresh_from_db()
    assert poor_fan_failure.resolved_at is None and poor_fan_failure.resent_msg_id == ""


def test_resend_by_get_is_refused(staff_client, poor_fan_failure):
    response = staff_client.get(reverse("admin:gifts_faileddelivery_resend", args=[poor_fan_failure.pk]))
    assert response.status_code == 403
    assert GiftEvent.objects.count() == 0


# --- server apps --------------------------------------------------------------------------------


def test_a_new_app_gets_a_generated_secret_shown_once(staff_client, client, chat):
    response = staff_client.post(
        reverse("admin:gifts_serverapp_add"), {"app_id": "3000003", "name": "new partner", "is_active": "on"}
    )
    assert response.status_code == 200
    app = ServerApp.objects.get(app_id="3000003")
    assert len(app.secret) == 32
    assert app.secret in response.content.decode()

    # from then on the admin shows only a masked secret
    for url in (reverse("admin:gifts_serverapp_change", args=[app.pk]), reverse("admin:gifts_serverapp_changelist")):
        assert app.secret not in staff_client.get(url).content.decode()
    # and the secret works
    data = call(
        client, {"UserId": "buyer", "Amount": 5, "Reference": "r1"}, action="TopUp", app_id="3000003", secret=app.secret
    )
    assert data["Code"] == 0


def test_a_typed_secret_is_kept_and_not_echoed(staff_client, db):
    response = staff_client.post(
        reverse("admin:gifts_serverapp_add"),
        {"app_id": "4000004", "name": "typed", "secret": "typed-secret-123", "is_active": "on"},
        follow=True,
    )
    assert ServerApp.objects.get(app_id="4000004").secret == "typed-secret-123"
    assert "typed-secret-123" not in response.content.decode()


def test_rotating_a_secret_shows_the_new_one_and_retires_the_old(staff_client, client, app, chat):
    response = staff_client.post(
        reverse("admin:gifts_serverapp_changelist"), {"action": "rotate_secret", "_selected_action": [app.pk]}
    )
    app.refresh_from_db()
    assert app.secret != SECRET and app.secret in response.content.decode()
    body = {"UserId": "buyer", "Amount": 5, "Reference": "r1"}
    assert call(client, body, action="TopUp")["Code"] == 7200001
    assert call(client, body, action="TopUp", secret=app.secret)["Code"] == 0


def test_an_app_saved_while_its_secret_is_rotated_keeps_the_new_secret(staff_client, superuser, app):
    """The form read the app before another staff member rotated its secret; saving must not bring the old one back."""
    app_admin = site._registry[ServerApp]
    request = RequestFactory().post("/")
    request.user = superuser
    stale = app_admin.get_object(request, str(app.pk))
    rotated = staff_client.post(reverse(CHANGELIST_APPS), {"action": "rotate_secret", "_selected_action": [app.pk]})
    assert rotated.status_code == 200
    app.refresh_from_db()
    new_secret = app.secret
    assert new_secret != SECRET

    form = app_admin.get_form(request, stale, change=True)({"name": "renamed", "is_active": "on"}, instance=stale)
    assert form.is_valid(), form.errors
    app_admin.save_model(request, form.save(commit=False), form, change=True)

    app.refresh_from_db()
    assert (app.name, app.secret) == ("renamed", new_secret)
