"""Staff work in the admin: the catalog is editable, money and events are not, by anybody."""

import pytest
from django.contrib.admin.sites import site
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import RequestFactory
from django.urls import reverse

from gifts.models import Gift, GiftEvent, Room, ValueTier
from gifts.services import GiftRequest, game_session_open, gift_send
from gifts.tests.factories import MiniGameFactory
from wallets.models import Account, Entry, Transfer
from wallets.selectors import ledger_totals, profile_balances

pytestmark = pytest.mark.django_db


@pytest.fixture
def gift_event(viewer, room, rose):
    outcome = gift_send(
        GiftRequest(
            scope=f"user:{viewer.pk}",
            msg_id="m1",
            sender=viewer,
            room=room,
            game_session=None,
            gift_code="rose",
            value=1,
            num=1,
        )
    )
    return outcome.event


def test_staff_adds_a_gift_with_tiers(staff_client):
    game = MiniGameFactory()
    response = staff_client.post(
        reverse("admin:gifts_gift_add"),
        {
            "gift_id": "star",
            "name": "Star",
            "price": "25",
            "icon": "/static/gifts/star.svg",
            "animation_format": "png",
            "animation_url": "",
            "is_active": "on",
            "sort_order": "5",
            "tiers-TOTAL_FORMS": "2",
            "tiers-INITIAL_FORMS": "0",
            "tiers-MIN_NUM_FORMS": "0",
            "tiers-MAX_NUM_FORMS": "1000",
            "tiers-0-mini_game": str(game.pk),
            "tiers-0-value": "10",
            "tiers-0-effect": "soldier",
            "tiers-1-mini_game": str(game.pk),
            "tiers-1-value": "66",
            "tiers-1-effect": "general",
        },
    )
    assert response.status_code == 302, response.context["adminform"].errors if response.context else response
    gift = Gift.objects.get(gift_id="star")
    assert gift.price == 25
    assert sorted(ValueTier.objects.filter(gift=gift).values_list("value", "effect")) == [
        (10, "soldier"),
        (66, "general"),
    ]


def test_gift_list_shows_icon_preview(staff_client, rose):
    response = staff_client.get(reverse("admin:gifts_gift_changelist"))
    assert response.status_code == 200
    assert b"<img" in response.content and rose.icon.encode() in response.content


def test_grant_coins_action_writes_a_real_transfer(staff_client, superuser, viewer):
    url = reverse("admin:wallets_profile_changelist")
    form = staff_client.post(url, {"action": "grant_coins", "_selected_action": [viewer.pk]})
    assert form.status_code == 200  # the amount and memo form
    grant_form = {
        "action": "grant_coins",
        "_selected_action": [viewer.pk],
        "apply": "1",
        "amount": "250",
        "memo": "sorry",
        "key": form.context["form"]["key"].value(),
    }
    response = staff_client.post(url, grant_form)
    assert response.status_code == 302
    assert profile_balances(viewer)["coins"] == 10_250
    # The same form sent again (a double click, a reload) grants nothing more.
    assert staff_client.post(url, grant_form).status_code == 302
    assert profile_balances(viewer)["coins"] == 10_250
    grant = Transfer.objects.get(kind=Transfer.Kind.GRANT)
    assert grant.created_by == superuser and grant.memo == "sorry"
    assert sorted(grant.entries.values_list("amount", flat=True)) == [-250, 250]
    assert ledger_totals()["sum_of_balances"] == 0


def test_grant_coins_refuses_a_bad_amount(staff_client, viewer):
    url = reverse("admin:wallets_profile_changelist")
    for amount in ["-5", "0", "abc"]:
        staff_client.post(
            url,
            {
                "action": "grant_coins",
                "_selected_action": [viewer.pk],
                "apply": "1",
                "amount": amount,
                "memo": "x",
                "key": "0b6f4d6e-7a53-4a39-9a42-6d1d3f0c2e11",
            },
        )
    assert profile_balances(viewer)["coins"] == 10_000
    assert not Transfer.objects.filter(kind=Transfer.Kind.GRANT).exists()


@pytest.mark.parametrize("model", [Entry, Transfer, Account, GiftEvent])
def test_nobody_can_change_or_delete_money_rows_or_events(staff_client, superuser, gift_event, model):
    obj = model.objects.first()
    opts = model._meta
    before = list(model.objects.values())
    change_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    delete_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_delete", args=[obj.pk])

    # the change page is view-only: posting to it is refused
    assert staff_client.post(change_url, {}).status_code == 403
    assert staff_client.get(delete_url).status_code == 403
    assert staff_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add")).status_code == 403
    assert list(model.objects.values()) == before

    request = RequestFactory().get("/")
    request.user = superuser
    model_admin = site._registry[model]
    assert not model_admin.has_change_permission(request, obj)
    assert not model_admin.has_delete_permission(request, obj)
    assert not model_admin.has_add_permission(request)


def test_wallet_page_cannot_edit_balances(staff_client, viewer):
    url = reverse("admin:wallets_profile_change", args=[viewer.pk])
    staff_client.post(url, {"nickname": "new", "avatar": "", "sex": "0", "coins": "999999", "earnings": "5"})
    assert profile_balances(viewer) == {"coins": 10_000, "earnings": 0}
    assert staff_client.get(reverse("admin:wallets_profile_delete", args=[viewer.pk])).status_code == 403


def test_the_accounts_list_shows_platform_balances_computed_from_their_entries(staff_client, gift_event):
    revenue = Account.objects.get(kind=Account.Kind.REVENUE)
    issued = Account.objects.get(kind=Account.Kind.ISSUED)

    page = staff_client.get(reverse("admin:wallets_account_changelist")).content.decode()

    # The rose cost 10: 5 to the host, 5 to the platform; the viewer's 10,000 coins were issued.
    assert "5 (computed: sum of entries)" in page
    assert "-10000 (computed: sum of entries)" in page
    detail = staff_client.get(reverse("admin:wallets_account_change", args=[revenue.pk])).content.decode()
    assert "5 (computed: sum of entries)" in detail
    assert issued.balance == 0  # what the list showed before


def test_a_room_saved_while_gifts_arrive_keeps_their_numbers(superuser, viewer, room, rose):
    """The form read the room before a gift numbered its event; saving the title must not undo that."""

    def send(msg_id):
        request = GiftRequest(
            scope=f"user:{viewer.pk}", msg_id=msg_id, sender=viewer, room=room, game_session=None, gift_code="rose",
            value=1, num=1,
        )  # fmt: skip
        return gift_send(request)

    room_admin = site._registry[Room]
    request = RequestFactory().post("/")
    request.user = superuser
    stale = room_admin.get_object(request, str(room.pk))  # as the change view reads it
    send("m-meanwhile")  # commits before the form is saved
    form = room_admin.get_form(request, stale, change=True)(
        {"room_id": room.room_id, "host": str(room.host.pk), "title": "Friday night"}, instance=stale
    )
    assert form.is_valid(), form.errors
    room_admin.save_model(request, form.save(commit=False), form, change=True)

    room.refresh_from_db()
    assert (room.title, room.last_seq) == ("Friday night", 1)
    assert send("m-after").event.seq == 2


@pytest.mark.parametrize(
    ("model", "permission", "action"),
    [
        ("room", "view_room", "go_live"),
        ("room", "view_room", "go_off_air"),
        ("gamesession", "view_gamesession", "start"),
        ("gamesession", "view_gamesession", "end"),
    ],
)
def test_staff_who_may_only_read_cannot_take_rooms_on_air_or_run_games(client, room, model, permission, action):
    reader = get_user_model().objects.create_user("reader", password="pw", is_staff=True)
    reader.user_permissions.add(Permission.objects.get(codename=permission))
    client.force_login(reader)
    session = game_session_open(room=room, mini_game=MiniGameFactory())
    selected = room.pk if model == "room" else session.pk

    live_before = room.is_live

    listing = client.get(reverse(f"admin:gifts_{model}_changelist"))
    form = listing.context["action_form"]
    offered = [name for name, _ in form.fields["action"].choices if name] if form else []
    assert listing.status_code == 200 and action not in offered
    client.post(reverse(f"admin:gifts_{model}_changelist"), {"action": action, "_selected_action": [selected]})

    room.refresh_from_db()
    session.refresh_from_db()
    assert (room.is_live, session.state) == (live_before, "waiting")


def test_staff_cannot_make_a_host_the_co_host_of_their_own_room(staff_client, room):
    response = staff_client.post(
        reverse("admin:gifts_room_change", args=[room.pk]),
        {
            "room_id": room.room_id,
            "host": str(room.host.pk),
            "title": "",
            "cohosts-TOTAL_FORMS": "1",
            "cohosts-INITIAL_FORMS": "0",
            "cohosts-MIN_NUM_FORMS": "0",
            "cohosts-MAX_NUM_FORMS": "8",
            "cohosts-0-profile": str(room.host.pk),
        },
    )
    assert response.status_code == 200 and b"not a co-host of their own room" in response.content
    assert not room.cohosts.exists()
