"""Leaderboards as a viewer reads them: who is on top, for which period, after which gifts."""

import datetime

import pytest
from django.utils import timezone

from gifts.services import gift_send, room_go_live, room_go_off_air
from gifts.tests.factories import gift_request
from rankings.selectors import leaderboard_top
from wallets.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


def send(sender, room, *, msg_id, num=1, gift="rose"):
    outcome = gift_send(gift_request(sender, room, msg_id, gift_code=gift, num=num))
    assert outcome.ok, outcome.message
    return outcome


def board(api_client, room, period="live", **params):
    response = api_client.get(f"/api/rooms/{room.room_id}/leaderboard/", {"period": period, **params})
    assert response.status_code == 200, response.data
    return [(entry["rank"], entry["user_id"], entry["coins"]) for entry in response.data["entries"]]


def test_every_period_counts_the_gifts(api_client, room, rose):
    alice, bob = ProfileFactory(user_id="alice", coins=1_000), ProfileFactory(user_id="bob", coins=1_000)
    send(alice, room, msg_id="a1", num=2)
    send(bob, room, msg_id="b1", num=5)
    send(alice, room, msg_id="a2", num=1)
    expected = [(1, "bob", 50), (2, "alice", 30)]
    for period in ["live", "day", "week", "all"]:
        assert board(api_client, room, period) == expected


def test_ties_go_to_who_reached_the_score_first(api_client, room, rose):
    first, second = ProfileFactory(user_id="first", coins=1_000), ProfileFactory(user_id="second", coins=1_000)
    send(first, room, msg_id="f1", num=3)
    send(second, room, msg_id="s1", num=3)
    assert board(api_client, room) == [(1, "first", 30), (2, "second", 30)]
    # second pulls ahead, then first catches up: second reached 50 first
    send(second, room, msg_id="s2", num=2)
    send(first, room, msg_id="f2", num=2)
    assert board(api_client, room, "all") == [(1, "second", 50), (2, "first", 50)]


def test_a_new_live_session_starts_the_live_board_at_zero(api_client, room, rose):
    alice = ProfileFactory(user_id="alice", coins=1_000)
    send(alice, room, msg_id="a1", num=4)
    room = room_go_off_air(room=room)
    # after the broadcast the live board keeps the final standings of that session
    assert board(api_client, room, "live") == [(1, "alice", 40)]
    room = room_go_live(room=room)
    assert board(api_client, room, "live") == []
    assert board(api_client, room, "all") == [(1, "alice", 40)]
    send(alice, room, msg_id="a2", num=1)
    assert board(api_client, room, "live") == [(1, "alice", 10)]
    assert board(api_client, room, "all") == [(1, "alice", 50)]


def test_leaderboards_are_per_room(api_client, room, rose):
    from gifts.tests.factories import RoomFactory

    other = RoomFactory()
    alice = ProfileFactory(user_id="alice", coins=1_000)
    send(alice, other, msg_id="a1")
    assert board(api_client, room, "all") == []


def test_limit(api_client, room, rose):
    for index in range(5):
        send(ProfileFactory(user_id=f"v{index}", coins=100), room, msg_id="m", num=index + 1)
    assert [row[1] for row in board(api_client, room, limit=3)] == ["v4", "v3", "v2"]


@pytest.mark.parametrize(
    "params", [{"period": "month"}, {"period": "LIVE"}, {"limit": "0"}, {"limit": "abc"}, {"limit": "100000"}]
)
def test_bad_period_or_limit_is_400_7200003(api_client, room, params):
    response = api_client.get(f"/api/rooms/{room.room_id}/leaderboard/", params)
    assert response.status_code == 400
    assert response.data["code"] == 7200003


def test_unknown_room_is_404(api_client, db):
    response = api_client.get("/api/rooms/nowhere/leaderboard/")
    assert response.status_code == 404 and response.data["code"] == 7200004


def test_day_board_of_another_day_is_separate(room, rose):
    alice = ProfileFactory(user_id="alice", coins=1_000)
    send(alice, room, msg_id="a1", num=2)
    from rankings.models import RankingEntry

    # a day's board is keyed by its UTC date: yesterday's entries do not show today
    RankingEntry.objects.filter(period="day").update(
        period_key=(timezone.now().astimezone(datetime.UTC).date() - datetime.timedelta(days=1)).isoformat()
    )
    assert leaderboard_top(room=room, period="day") == []
    assert [row["coins"] for row in leaderboard_top(room=room, period="all")] == [20]
