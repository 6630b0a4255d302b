"""Staff set and inspect goals and PK battles in the admin; progress and scores are never typed in by hand."""

import datetime
import re

import pytest
from django.utils import timezone

from engagement.admin import GoalForm
from engagement.models import Goal, PkBattle
from engagement.services import pk_battle_start, pk_battles_end_due, room_goal_set
from gifts.models import GiftEvent, Room
from gifts.services import gift_send, room_go_live, room_go_off_air
from gifts.tests.factories import RoomFactory, gift_request

pytestmark = pytest.mark.django_db


def test_staff_set_a_live_rooms_goal_and_gifts_count_towards_it(staff_client, viewer, room, rose):
    response = staff_client.post(
        "/admin/engagement/goal/add/",
        {"room": room.pk, "title": "Staff goal", "target": 30, "gift": rose.pk, "progress": 999},
    )
    gift_send(gift_request(viewer, room, "m1", num=2))

    assert response.status_code == 302, response.content
    goal = Goal.objects.get()
    assert (goal.title, goal.target, goal.gift, goal.progress, goal.set_by) == ("Staff goal", 30, rose, 2, None)
    assert Room.objects.get(pk=room.pk).goal == goal
    listing = staff_client.get("/admin/engagement/goal/")
    assert b"Staff goal" in listing.content


def test_staff_change_the_target_and_keep_the_progress(staff_client, viewer, room, rose):
    goal = room_goal_set(room=room, by=room.host, title="Host goal", target=100)
    gift_send(gift_request(viewer, room, "m1", num=3))

    response = staff_client.post(
        f"/admin/engagement/goal/{goal.pk}/change/", {"title": "Host goal", "target": 25, "gift": ""}
    )

    assert response.status_code == 302, response.content
    goal.refresh_from_db()
    assert (goal.target, goal.progress, goal.reached) == (25, 30, True)


def test_a_room_off_air_gets_no_goal(staff_client, room):
    room_go_off_air(room=room)

    response = staff_client.post("/admin/engagement/goal/add/", {"room": room.pk, "title": "Too late", "target": 5})

    assert response.status_code == 200 and b"not live" in response.content
    assert not Goal.objects.exists()


def test_a_room_that_goes_off_air_while_its_goal_is_saved_is_told_on_the_form(staff_client, room, monkeypatch):
    """The form saw the room live; it went off air before the goal was set: an error on the form, not a 500."""
    check_room = GoalForm.clean_room

    def checked_then_off_air(form):
        checked = check_room(form)
        room_go_off_air(room=Room.objects.get(pk=room.pk))
        return checked

    monkeypatch.setattr(GoalForm, "clean_room", checked_then_off_air)
    response = staff_client.post("/admin/engagement/goal/add/", {"room": room.pk, "title": "Too late", "target": 5})

    assert response.status_code == 200 and b"is not live" in response.content
    assert not Goal.objects.exists()


def test_the_goal_of_an_ended_session_is_history(staff_client, room):
    goal = room_goal_set(room=room, by=room.host, title="Last night", target=5)
    room_go_off_air(room=room)
    room_go_live(room=Room.objects.get(pk=room.pk))

    page = staff_client.get(f"/admin/engagement/goal/{goal.pk}/change/")
    change = staff_client.post(f"/admin/engagement/goal/{goal.pk}/change/", {"title": "Rewritten", "target": 1})

    assert page.status_code == 200 and b'name="title"' not in page.content
    assert change.status_code == 403
    goal.refresh_from_db()
    assert Goal.objects.get() == goal and (goal.title, goal.target) == ("Last night", 5)
    assert Room.objects.get(pk=room.pk).goal is None


def test_staff_start_a_battle_and_inspect_its_result(staff_client, viewer, room, rose):
    other = RoomFactory(room_id="other")

    response = staff_client.post("/admin/engagement/pkbattle/add/", {"rooms": [room.pk, other.pk], "duration_s": 60})
    gift_send(gift_request(viewer, room, "m1", num=2))
    battle = PkBattle.objects.get()
    PkBattle.objects.filter(pk=battle.pk).update(ends_at=timezone.now() - datetime.timedelta(seconds=1))
    pk_battles_end_due()
    page = staff_client.get(f"/admin/engagement/pkbattle/{battle.pk}/change/")

    assert response.status_code == 302, response.content
    battle.refresh_from_db()
    assert (battle.source, battle.started_by.username, battle.state, battle.winner) == ("staff", "boss", "ended", room)
    assert page.status_code == 200
    scores = re.findall(rb'field-score">\s*<p>(\d+)</p>', page.content)
    assert scores == [b"20", b"0"]  # the sides' scores: the lobby's 2 roses, the other room's none


def test_staff_cannot_start_a_battle_for_a_room_already_fighting(staff_client, room):
    RoomFactory(room_id="other")
    third = RoomFactory(room_id="third")
    pk_battle_start(room_ids=["lobby", "other"], duration_s=60, source="server")

    response = staff_client.post("/admin/engagement/pkbattle/add/", {"rooms": [room.pk, third.pk], "duration_s": 60})

    assert response.status_code == 200 and b"Already in a running PK battle: lobby" in response.content
    assert PkBattle.objects.count() == 1


def test_a_pk_end_event_exports_to_csv_without_a_sender(staff_client, viewer, room, rose):
    from wallets.tests.test_exports import export

    RoomFactory(room_id="other")
    battle = pk_battle_start(room_ids=["lobby", "other"], duration_s=60, source="server")
    gift_send(gift_request(viewer, room, "m1"))
    PkBattle.objects.filter(pk=battle.pk).update(ends_at=timezone.now() - datetime.timedelta(seconds=1))
    pk_battles_end_due()

    rows = export(
        staff_client, "gifts_giftevent", list(GiftEvent.objects.filter(room=room).values_list("pk", flat=True))
    )

    assert [(row["seq"], row["kind"], row["sender"], row["pk_id"]) for row in rows] == [
        ("1", "gift", "alice", ""),
        ("2", "pk_end", "", str(battle.pk)),
    ]


def test_a_duration_the_service_refuses_is_a_form_error(staff_client, room):
    other = RoomFactory(room_id="other")

    response = staff_client.post("/admin/engagement/pkbattle/add/", {"rooms": [room.pk, other.pk], "duration_s": 3601})

    assert response.status_code == 200 and b"duration_s: 10 to 3600 seconds" in response.content
    assert not PkBattle.objects.exists()


def test_saving_a_room_in_the_admin_leaves_its_battle_alone(staff_client, room):
    RoomFactory(room_id="other")
    pk_battle_start(room_ids=["lobby", "other"], duration_s=60, source="server")
    side = Room.objects.get(pk=room.pk).pk_side

    page = staff_client.get(f"/admin/gifts/room/{room.pk}/change/")
    staff_client.post(
        f"/admin/gifts/room/{room.pk}/change/",
        {
            "room_id": "lobby",
            "host": room.host.pk,
            "title": "Renamed",
            "cohosts-TOTAL_FORMS": "0",
            "cohosts-INITIAL_FORMS": "0",
        },
    )

    assert b'name="pk_side"' not in page.content
    saved = Room.objects.get(pk=room.pk)
    assert (saved.title, saved.pk_side) == ("Renamed", side)
