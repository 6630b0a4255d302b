"""seed_demo makes exactly the demo of SPEC section 8, and running it again changes nothing."""

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from gifts.models import GameSession, Gift, LiveSession, MiniGame, Room, ServerApp, ValueTier
from wallets.models import Entry, Profile, Transfer
from wallets.selectors import ledger_totals, profile_balances

pytestmark = pytest.mark.django_db


def state():
    return {
        "balances": {p.user_id: profile_balances(p) for p in Profile.objects.order_by("user_id")},
        "counts": [
            model.objects.count()
            for model in (
                Gift,
                MiniGame,
                ValueTier,
                Room,
                LiveSession,
                GameSession,
                Profile,
                Transfer,
                Entry,
                ServerApp,
            )
        ],
    }


def test_seed_demo_creates_the_demo():
    call_command("seed_demo")
    assert {(g.gift_id, g.name, g.price) for g in Gift.objects.all()} >= {
        ("g1", "Rocket", 1),
        ("rose", "Rose", 1),
        ("car", "Car", 500),
    }
    assert sorted(
        ValueTier.objects.filter(mini_game__mini_game_id="TinyLoveWar", gift__gift_id="g1").values_list(
            "value", "effect"
        )
    ) == [
        (10, "soldier"),
        (66, "general"),
    ]
    room123, room456 = Room.objects.get(room_id="room123"), Room.objects.get(room_id="room456")
    assert (room123.host.user_id, room123.is_live) == ("anchor111", True)
    assert (room456.host.user_id, room456.is_live) == ("anchor222", True)
    assert GameSession.objects.get(room=room123).state == GameSession.State.STARTED
    assert not GameSession.objects.filter(room=room456).exists()
    for n in range(1, 6):
        assert profile_balances(Profile.objects.get(user_id=f"user{n}"))["coins"] == 100_000
    for user_id in ["anchor111", "anchor222", "user1", "user5"]:
        assert authenticate(username=user_id, password="demo-pass") is not None
    assert ServerApp.objects.get(app_id="1000001").secret == "demo-secret"
    assert ledger_totals()["sum_of_balances"] == 0


def test_seed_demo_is_idempotent():
    call_command("seed_demo")
    first = state()
    call_command("seed_demo")
    assert state() == first


def test_seed_demo_options(capsys):
    call_command("seed_demo", password="s3cret-pw", app_id="42", app_secret="shh")
    assert authenticate(username="user2", password="s3cret-pw") is not None
    assert authenticate(username="user2", password="demo-pass") is None
    assert ServerApp.objects.get(app_id="42").secret == "shh"
    assert get_user_model().objects.get(username="admin").is_superuser
    assert "room123" in capsys.readouterr().out


def test_seed_demo_relay_marks_tiny_love_war_relayed_and_its_gifts_owe_the_game(client, capsys):
    from relay.models import GameDelivery

    call_command("seed_demo")
    assert not MiniGame.objects.get(mini_game_id="TinyLoveWar").relay
    call_command("seed_demo", relay=True)
    assert MiniGame.objects.get(mini_game_id="TinyLoveWar").relay
    assert "relayed to the game vendor" in capsys.readouterr().out

    token = client.post(
        "/api/auth/token/", {"username": "user1", "password": "demo-pass"}, content_type="application/json"
    ).json()["token"]
    headers = {"HTTP_AUTHORIZATION": f"Token {token}"}
    client.post("/api/rooms/room123/game/join/", **headers)
    sent = client.post(
        "/api/rooms/room123/gifts/",
        {"gift_id": "g1", "msg_id": "demo-relay-1", "value": 10},
        content_type="application/json",
        **headers,
    )
    assert sent.status_code == 201
    assert GameDelivery.objects.get().status == "pending"
