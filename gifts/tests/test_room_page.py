"""The viewer pages as a browser receives them: the live room list, a room, signing in and out."""

import json
import re

import pytest
from django.core.cache import cache
from django.test import Client

from gifts.models import GiftEvent
from gifts.services import game_join, room_go_off_air
from gifts.tests.factories import GiftFactory, RoomFactory, ValueTierFactory, started_game
from wallets.models import Profile
from wallets.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clear_cache():
    # The send throttle counts in the cache; each test starts with a clean slate.
    cache.clear()
    yield
    cache.clear()


def signed_in(profile) -> Client:
    client = Client()
    client.force_login(profile.login)
    return client


def page_state(response) -> dict:
    """The JSON the room page hands its script (rendered with json_script)."""
    match = re.search(rb'<script id="room-state" type="application/json">(.*?)</script>', response.content, re.S)
    assert match, "room page has no room-state script"
    return json.loads(match.group(1))


def send(client_for, profile, room, gift_id: str, msg_id: str, **extra):
    response = client_for(profile).post(
        f"/api/rooms/{room.room_id}/gifts/", {"gift_id": gift_id, "msg_id": msg_id, **extra}, format="json"
    )
    assert response.status_code == 201, response.data
    return response.data


# --- the live room list -----------------------------------------------------------------------


def test_home_lists_live_rooms_with_links_and_leaves_out_rooms_off_air(db):
    RoomFactory(room_id="room456", title="Chill chat", host=ProfileFactory(user_id="anchor222", nickname="Anchor"))
    off_air = RoomFactory(room_id="quiet", title="Nobody home")
    room_go_off_air(room=off_air)

    response = Client().get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/rooms/room456/"' in html
    assert "Chill chat" in html
    assert "hosted by Anchor" in html
    assert "Nobody home" not in html


def test_home_says_so_when_no_room_is_live(db):
    response = Client().get("/")
    assert "No room is live right now" in response.content.decode()


def test_home_shows_a_running_game(room):
    started_game(room)
    html = Client().get("/").content.decode()
    assert "Tiny Love War · started" in html


# --- the room page: watching --------------------------------------------------------------------


def test_anonymous_viewer_watches_and_is_invited_to_log_in(room, rose):
    response = Client().get(f"/rooms/{room.room_id}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert room.title in html
    assert "hosted by <strong>Nick hostess</strong>" in html
    assert ">LIVE<" in html
    assert 'href="/login/?next=/rooms/lobby/"' in html
    assert "Log in to send gifts" in html
    assert 'id="gift-form"' not in html
    assert page_state(response)["viewer"] is None


def test_room_page_shows_leaderboard_and_feed_with_count_and_combo(room, rose, viewer, client_for):
    # given two quick roses from alice (a combo) and one from bob
    bob = ProfileFactory(user_id="bob", nickname="Bob", coins=1_000)
    send(client_for, viewer, room, "rose", "a1", num=3)
    send(client_for, viewer, room, "rose", "a2")
    send(client_for, bob, room, "rose", "b1")

    response = Client().get(f"/rooms/{room.room_id}/")

    html = response.content.decode()
    # the feed, newest first: sender, icon, count, and the combo badge on alice's second rose
    items = re.findall(r'<li class="feed-item" data-seq="(\d+)">(.*?)</li>', html, re.S)
    assert [seq for seq, _ in items] == ["3", "2", "1"]
    assert "Bob" in items[0][1]
    assert "Nick alice" in items[1][1] and '<span class="combo">x2</span>' in items[1][1]
    assert "×3" in items[2][1] and 'src="/static/gifts/rose.svg"' in items[2][1]
    # the live leaderboard: alice spent 40 coins, bob 10
    rows = re.findall(r'<li class="leaderboard-row" data-user-id="(\w+)">', html)
    assert rows == ["alice", "bob"]
    state = page_state(response)
    assert state["seq"] == 3
    assert [event["seq"] for event in state["recent"]] == [1, 2, 3]
    assert [entry["coins"] for entry in state["leaderboard"]] == [40, 10]


def test_leaderboard_shows_at_most_ten(room, rose, client_for):
    for n in range(12):
        send(client_for, ProfileFactory(coins=1_000), room, "rose", f"m{n}", num=n + 1)

    state = page_state(Client().get(f"/rooms/{room.room_id}/"))

    assert len(state["leaderboard"]) == 10
    assert state["leaderboard"][0]["coins"] == 120


def test_room_off_air_still_opens_and_says_offline(room):
    room_go_off_air(room=room)
    response = Client().get(f"/rooms/{room.room_id}/")
    assert response.status_code == 200
    assert ">Offline<" in response.content.decode()
    assert page_state(response)["live"] is False


def test_unknown_room_is_a_404_page(db):
    response = Client().get("/rooms/nope/")
    assert response.status_code == 404
    assert "Not found" in response.content.decode()


def test_names_are_escaped_in_the_page_and_its_data(room, rose, client_for):
    sneaky = ProfileFactory(user_id="sneaky", nickname="</script><script>alert(1)</script>", coins=100)
    send(client_for, sneaky, room, "rose", "x1")

    html = Client().get(f"/rooms/{room.room_id}/").content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in html


# --- the room page: the gift panel --------------------------------------------------------------


def test_signed_in_viewer_gets_the_gift_panel(viewer, room, rose):
    GiftFactory(gift_id="car", name="Car", price=500)
    response = signed_in(viewer).get(f"/rooms/{room.room_id}/")

    html = response.content.decode()
    assert 'id="gift-form"' in html
    assert 'data-coins="10000"' in html and "10,000" in html
    assert 'value="car" data-price="500"' in html
    assert 'value="rose" data-price="10"' in html
    for n in (1, 5, 10, 66, 99):
        assert f'name="num" value="{n}"' in html
    assert "Log in to send gifts" not in html
    assert 'id="join-game"' not in html  # no game in this room
    # the page carries a CSRF token for the session-authenticated API calls
    assert re.search(r'<meta name="csrf-token" content="\w+">', html)
    state = page_state(response)
    assert state["viewer"] == {"user_id": "alice", "coins": 10_000, "joined": False}
    assert state["urls"]["send"] == "/api/rooms/lobby/gifts/"
    assert state["urls"]["socket"] == "/ws/rooms/lobby/"
    assert state["tiers"] == {}


def test_game_room_offers_join_and_the_value_tiers(viewer, room):
    g1 = GiftFactory(gift_id="g1", name="Rocket", price=1)
    ValueTierFactory(gift=g1, value=10, effect="soldier")
    ValueTierFactory(gift=g1, value=66, effect="general")
    started_game(room)

    response = signed_in(viewer).get(f"/rooms/{room.room_id}/")

    html = response.content.decode()
    assert ">Join game</button>" in html
    state = page_state(response)
    assert state["game"]["state"] == "started"
    assert state["tiers"] == {"g1": [{"value": 10, "effect": "soldier"}, {"value": 66, "effect": "general"}]}


def test_a_viewer_who_joined_sees_joined(viewer, room):
    session = started_game(room)
    game_join(room=session.room, profile=viewer)

    response = signed_in(viewer).get(f"/rooms/{room.room_id}/")

    assert "Joined ✓</button>" in response.content.decode()
    assert page_state(response)["viewer"]["joined"] is True


def test_the_host_is_told_it_is_their_room(room):
    html = signed_in(room.host).get(f"/rooms/{room.room_id}/").content.decode()
    assert "This is your room" in html
    assert 'id="gift-form"' not in html


def test_opening_the_page_creates_nothing_for_a_staff_user_without_a_profile(room, django_user_model):
    staff = django_user_model.objects.create_user("boss", password="pw-12345678", is_staff=True)
    client = Client()
    client.force_login(staff)

    response = client.get(f"/rooms/{room.room_id}/")

    assert response.status_code == 200
    assert page_state(response)["viewer"] == {"user_id": "boss", "coins": 0, "joined": False}
    assert not Profile.objects.filter(login=staff).exists()


def test_the_page_csrf_token_lets_the_session_send_a_gift(viewer, room, rose):
    # given a browser session that opened the room page (CSRF is enforced as in production)
    client = Client(enforce_csrf_checks=True)
    client.force_login(viewer.login)
    page = client.get(f"/rooms/{room.room_id}/")
    token = re.search(r'<meta name="csrf-token" content="(\w+)">', page.content.decode()).group(1)
    body = json.dumps({"gift_id": "rose", "msg_id": "page-1", "num": 2})

    # when the page's script posts without the token, then with it
    refused = client.post(f"/api/rooms/{room.room_id}/gifts/", body, content_type="application/json")
    sent = client.post(
        f"/api/rooms/{room.room_id}/gifts/", body, content_type="application/json", headers={"X-CSRFToken": token}
    )

    # then only the request carrying the token is accepted, and it charges the viewer
    assert refused.status_code == 403
    assert sent.status_code == 201
    assert sent.json()["coins_balance"] == 9_980
    assert GiftEvent.objects.filter(room=room).count() == 1


# --- signing in and out -------------------------------------------------------------------------


def test_login_page_signs_a_viewer_in_and_returns_to_the_room(viewer, room):
    client = Client()
    form = client.get("/login/?next=/rooms/lobby/")
    assert form.status_code == 200
    assert 'name="username"' in form.content.decode()

    response = client.post("/login/", {"username": "alice", "password": "test-pass", "next": "/rooms/lobby/"})

    assert response.status_code == 302
    assert response["Location"] == "/rooms/lobby/"
    assert 'id="gift-form"' in client.get("/rooms/lobby/").content.decode()


def test_login_with_a_wrong_password_says_so(viewer):
    response = Client().post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "enter a correct username and password" in response.content.decode()


def test_login_refuses_to_send_the_viewer_to_another_site(viewer):
    response = Client().post("/login/", {"username": "alice", "password": "test-pass", "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_logout_signs_the_viewer_out(viewer, room):
    client = signed_in(viewer)
    response = client.post("/logout/")
    assert response.status_code == 302
    assert "Log in to send gifts" in client.get(f"/rooms/{room.room_id}/").content.decode()
