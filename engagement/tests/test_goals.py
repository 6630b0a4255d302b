"""A room's goal: set by its host, grown by gifts, shrunk by refunds, reached once."""

import pytest
from django.db.models import F

from engagement.models import Goal
from engagement.selectors import goal_recount, goals_audit
from engagement.services import room_goal_set
from gifts.models import Room
from gifts.services import gifts_send, room_go_live, room_go_off_air
from gifts.tests.factories import GiftFactory, RoomFactory, gift_request
from refunds.services import gift_refund
from wallets.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


def goal_of(room) -> Goal:
    return Goal.objects.get(pk=Room.objects.get(pk=room.pk).goal_id)


def send(viewer, room, *msg_ids, gift_code="rose", num=1):
    outcomes = gifts_send([gift_request(viewer, room, msg_id, gift_code=gift_code, num=num) for msg_id in msg_ids])
    assert all(outcome.ok for outcome in outcomes), [outcome.message for outcome in outcomes]
    return outcomes


def test_gifts_grow_a_coins_goal_and_reaching_it_is_noted_once(viewer, room, rose):
    room_goal_set(room=room, by=room.host, title="100 coins for a song", target=100)

    send(viewer, room, "m1", num=4)  # 40 coins
    assert (goal_of(room).progress, goal_of(room).reached_at) == (40, None)
    send(viewer, room, "m2", "m3", num=3)  # 60 more: exactly the target
    reached = goal_of(room)
    assert reached.progress == 100 and reached.reached_at is not None
    send(viewer, room, "m4")
    assert goal_of(room).progress == 110 and goal_of(room).reached_at == reached.reached_at


def test_a_gift_goal_counts_that_gift_only_value_times_num(viewer, room, rose):
    GiftFactory(gift_id="car", price=100)
    room_goal_set(room=room, by=room.host, title="10 roses", target=10, gift_id="rose")

    send(viewer, room, "m1", num=3)
    send(viewer, room, "m2", gift_code="car", num=2)
    gifts_send([gift_request(viewer, room, "m3", num=2), gift_request(viewer, room, "m4", gift_code="car")])

    assert goal_of(room).progress == 5


def test_gifts_sent_before_the_goal_do_not_count(viewer, room, rose):
    send(viewer, room, "before", num=5)
    room_goal_set(room=room, by=room.host, title="goal", target=100)
    send(viewer, room, "after", num=2)

    goal = goal_of(room)
    assert goal.progress == 20 and goal.from_seq == 1


def test_one_batch_counts_towards_the_goal_of_each_of_its_rooms(viewer, room, rose):
    other = RoomFactory(room_id="other")
    room_goal_set(room=room, by=room.host, title="here", target=1000)
    room_goal_set(room=other, by=other.host, title="there", target=5, gift_id="rose")

    gifts_send(
        [
            gift_request(viewer, room, "a1", num=2),
            gift_request(viewer, other, "b1", num=3),
            gift_request(viewer, room, "a2"),
            gift_request(viewer, other, "b2", num=4),
        ]
    )

    assert goal_of(room).progress == 30
    assert goal_of(other).progress == 7 and goal_of(other).reached_at is not None


def test_a_refund_takes_the_gift_back_and_a_reached_goal_stays_reached(viewer, room, rose):
    room_goal_set(room=room, by=room.host, title="goal", target=50)
    paid = send(viewer, room, "m1", num=5)[0]
    version = goal_of(room).version

    gift_refund(event=paid.event, reason="mistake")

    goal = goal_of(room)
    assert goal.progress == 0 and goal.reached_at is not None and goal.version == version + 1


def test_a_refund_of_a_gift_the_goal_never_counted_leaves_it_alone(viewer, room, rose):
    GiftFactory(gift_id="car", price=100)
    before = send(viewer, room, "before")[0]
    room_goal_set(room=room, by=room.host, title="roses", target=50, gift_id="rose")
    car = send(viewer, room, "car", gift_code="car")[0]
    counted = send(viewer, room, "rose", num=2)[0]

    gift_refund(event=before.event)
    gift_refund(event=car.event)
    assert goal_of(room).progress == 2
    gift_refund(event=counted.event)
    assert goal_of(room).progress == 0


def test_changing_title_or_target_keeps_progress_and_counting_something_else_starts_again(viewer, room, rose):
    GiftFactory(gift_id="car", price=100)
    room_goal_set(room=room, by=room.host, title="goal", target=30)
    send(viewer, room, "m1", num=3)

    room_goal_set(room=room, by=room.host, title="bigger goal", target=40)
    goal = goal_of(room)
    assert (goal.title, goal.target, goal.progress, goal.reached_at) == ("bigger goal", 40, 30, None)

    room_goal_set(room=room, by=room.host, title="lower", target=20)
    assert goal_of(room).reached_at is not None  # already there

    room_goal_set(room=room, by=room.host, title="higher", target=35)
    assert goal_of(room).reached_at is None  # a new target to reach
    send(viewer, room, "m2")
    assert goal_of(room).reached_at is not None

    room_goal_set(room=room, by=room.host, title="cars", target=2, gift_id="car")
    goal = goal_of(room)
    assert (goal.progress, goal.reached_at, goal.from_seq) == (0, None, 2)
    earlier_rose = send(viewer, room, "m3")[0]
    send(viewer, room, "m4", gift_code="car")
    assert goal_of(room).progress == 1
    assert Goal.objects.count() == 1  # one goal per live session, changed in place
    gift_refund(event=earlier_rose.event)  # a rose never counted towards cars
    assert goal_of(room).progress == 1


def test_a_new_live_session_starts_without_a_goal(viewer, room, rose, client_for):
    room_goal_set(room=room, by=room.host, title="goal", target=30)
    room_go_off_air(room=room)
    room_go_live(room=Room.objects.get(pk=room.pk))

    send(viewer, room, "m1")

    assert Room.objects.get(pk=room.pk).goal_id is None
    assert client_for(viewer).get(f"/api/rooms/{room.room_id}/").json()["goal"] is None
    assert Goal.objects.get().progress == 0  # the old session's goal counted nothing of the new one


# --- the API ------------------------------------------------------------------------------------


def test_the_host_sets_a_goal_and_the_room_detail_shows_its_progress(viewer, room, rose, client_for):
    url = f"/api/rooms/{room.room_id}/goal/"

    response = client_for(room.host).put(url, {"title": "20 roses", "target": 20, "gift_id": "rose"}, format="json")
    send(viewer, room, "m1", num=7)
    detail = client_for(viewer).get(f"/api/rooms/{room.room_id}/").json()

    assert response.status_code == 200
    goal_id = response.json()["goal_id"]
    assert response.json() == {
        "room_id": room.room_id,
        "goal_id": goal_id,
        "title": "20 roses",
        "target": 20,
        "gift": {"gift_id": "rose", "name": "Rose", "icon": rose.icon},
        "progress": 0,
        "reached": False,
        "version": 1,
    }
    assert detail["goal"] == {**response.json(), "progress": 7, "version": 2}


def test_only_the_host_may_set_the_goal(viewer, room, rose, client_for, api_client):
    url = f"/api/rooms/{room.room_id}/goal/"
    body = {"title": "goal", "target": 10}

    by_viewer = client_for(viewer).put(url, body, format="json")
    anonymous = api_client.put(url, body, format="json")

    assert (by_viewer.status_code, by_viewer.json()["code"]) == (403, 7200001)
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, 7200001)
    assert not Goal.objects.exists()


def test_a_room_off_air_has_no_session_to_set_a_goal_for(room, client_for):
    room_go_off_air(room=room)

    response = client_for(room.host).put(f"/api/rooms/{room.room_id}/goal/", {"title": "g", "target": 1}, format="json")

    assert (response.status_code, response.json()["code"]) == (404, 7200004)
    assert not Goal.objects.exists()


def test_an_unknown_or_inactive_gift_is_10004(room, client_for):
    GiftFactory(gift_id="retired", is_active=False)
    url = f"/api/rooms/{room.room_id}/goal/"

    for gift_id in ("nosuch", "retired"):
        response = client_for(room.host).put(url, {"title": "g", "target": 1, "gift_id": gift_id}, format="json")
        assert (response.status_code, response.json()["code"]) == (404, 10004)
    assert not Goal.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": "", "target": 10},
        {"title": "x" * 101, "target": 10},
        {"title": "goal", "target": 0},
        {"title": "goal", "target": -5},
        {"title": "goal", "target": 10**12 + 1},
        {"title": "goal", "target": "10"},
        {"title": "goal", "target": 1.5},
        {"title": 7, "target": 10},
        {"title": "goal", "target": 10, "gift_id": ""},
        {"title": "goal", "target": 10, "gift_id": None},
    ],
)
def test_bad_goals_are_7200003_and_change_nothing(room, client_for, body):
    response = client_for(room.host).put(f"/api/rooms/{room.room_id}/goal/", body, format="json")

    assert (response.status_code, response.json()["code"]) == (400, 7200003)
    assert not Goal.objects.exists()


def test_another_rooms_host_may_not_set_this_rooms_goal(room, client_for):
    other_host = ProfileFactory(user_id="other-host")
    RoomFactory(room_id="other", host=other_host)

    response = client_for(other_host).put(
        f"/api/rooms/{room.room_id}/goal/", {"title": "g", "target": 1}, format="json"
    )

    assert response.status_code == 403


def test_ledger_check_names_a_goal_whose_progress_is_not_its_gifts(viewer, room, rose):
    room_goal_set(room=room, by=room.host, title="goal", target=100)
    send(viewer, room, "m1", num=2)
    refunded = send(viewer, room, "m2")[0]
    gift_refund(event=refunded.event)
    assert [check.ok for check in goals_audit()] == [True]
    assert goal_recount(Goal.objects.all()).get().recount == 20

    Goal.objects.update(progress=F("progress") + 1)

    [check] = goals_audit()
    assert not check.ok and check.offenders == [f"goal #{goal_of(room).pk}"]


def test_a_gift_goal_counts_value_times_num_of_a_game_gift(viewer, room, rose):
    from gifts.services import game_join
    from gifts.tests.factories import ValueTierFactory, started_game

    ValueTierFactory(gift=rose, value=10)
    session = started_game(room)
    game_join(room=room, profile=viewer)
    room_goal_set(room=room, by=room.host, title="roses", target=100, gift_id="rose")

    outcome = gifts_send([gift_request(viewer, room, "m1", value=10, num=2, session=session)])[0]

    assert outcome.ok, outcome.message
    assert goal_of(room).progress == 20  # 2 sends of a Value-10 rose: 20 roses
