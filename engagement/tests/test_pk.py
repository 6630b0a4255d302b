"""PK battles: started by a business server, staff or a host's invite; scored by gifts; ended by a sequenced cut."""

import datetime

import pytest
from django.utils import timezone

from engagement.models import PkBattle, PkSide
from engagement.services import pk_battle_answer, pk_battle_invite, pk_battle_start, pk_battles_end_due
from gifting_site.errors import NotRoomHost, PkConflict, PkNotPending, RoomUnavailable
from gifts.models import GiftEvent, Room, RoomCohost
from gifts.services import gifts_send, room_go_off_air
from gifts.tests.factories import RoomFactory, gift_request
from gifts.tests.test_server_api import call
from refunds.services import gift_refund
from wallets.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def red(db):
    return RoomFactory(room_id="red", host=ProfileFactory(user_id="red-host"))


@pytest.fixture
def blue(db):
    return RoomFactory(room_id="blue", host=ProfileFactory(user_id="blue-host"))


def start(*rooms, duration_s=60) -> PkBattle:
    return pk_battle_start(
        room_ids=[room.room_id for room in rooms], duration_s=duration_s, source=PkBattle.Source.SERVER
    )


def send(viewer, room, *msg_ids, num=1, receiver=None):
    outcomes = gifts_send([gift_request(viewer, room, msg_id, num=num, receiver=receiver) for msg_id in msg_ids])
    assert all(outcome.ok for outcome in outcomes), [outcome.message for outcome in outcomes]
    return outcomes


def time_is_up(battle: PkBattle) -> list[int]:
    """The battle's clock runs out now, and the clock's check ends it."""
    PkBattle.objects.filter(pk=battle.pk).update(ends_at=timezone.now() - datetime.timedelta(milliseconds=1))
    return pk_battles_end_due()


def scores(battle: PkBattle) -> dict[str, int]:
    return {side.room.room_id: side.score for side in PkSide.objects.filter(battle=battle).select_related("room")}


def test_gifts_to_each_room_score_for_its_side_and_the_end_is_a_sequenced_event(viewer, red, blue, rose):
    send(viewer, red, "before", num=9)  # before the battle: not counted
    battle = start(red, blue, duration_s=300)
    assert (battle.state, battle.ends_at - battle.starts_at) == ("running", datetime.timedelta(seconds=300))

    send(viewer, red, "r1", num=3)
    send(viewer, blue, "b1", num=2)
    gifts_send([gift_request(viewer, red, "r2"), gift_request(viewer, blue, "b2", num=5)])  # one batch, two rooms
    assert scores(battle) == {"red": 40, "blue": 70}

    assert time_is_up(battle) == [battle.pk]
    send(viewer, red, "after", num=50)  # after its room's pk_end: not counted

    battle.refresh_from_db()
    assert (battle.state, battle.winner.room_id) == ("ended", "blue")
    assert scores(battle) == {"red": 40, "blue": 70}
    for room, end_seq in ((red, 4), (blue, 3)):
        side = PkSide.objects.get(battle=battle, room=room)
        pk_end = GiftEvent.objects.get(room=room, kind="pk_end")
        assert (pk_end.seq, pk_end.pk_battle_id, side.end_seq) == (end_seq, battle.pk, end_seq)
        assert Room.objects.get(pk=room.pk).pk_side is None
    assert GiftEvent.objects.get(room=red, msg_id="after").seq == 5


def test_a_tie_has_no_winner_and_a_second_end_changes_nothing(viewer, red, blue, rose):
    battle = start(red, blue)
    send(viewer, red, "r1")
    send(viewer, blue, "b1")

    time_is_up(battle)
    assert pk_battles_end_due() == []

    battle.refresh_from_db()
    assert battle.state == "ended" and battle.winner is None
    assert GiftEvent.objects.filter(kind="pk_end").count() == 2


def test_gifts_to_a_cohost_score_for_the_room(viewer, red, blue, rose):
    RoomCohost.objects.create(room=red, profile=ProfileFactory(user_id="guest"))
    battle = start(red, blue)

    send(viewer, red, "m1", num=4, receiver="guest")

    assert scores(battle)["red"] == 40


def test_a_refund_during_the_battle_takes_its_coins_back_and_one_after_changes_nothing(viewer, red, blue, rose):
    battle = start(red, blue)
    during, kept = send(viewer, red, "m1", "m2", num=3)
    late = send(viewer, blue, "m3", num=2)[0]

    gift_refund(event=during.event)
    assert scores(battle) == {"red": 30, "blue": 20}
    assert pk_top(battle, red) == [("alice", 30)]

    time_is_up(battle)
    gift_refund(event=kept.event)
    gift_refund(event=late.event)

    battle.refresh_from_db()
    assert scores(battle) == {"red": 30, "blue": 20} and battle.winner == red
    assert pk_top(battle, red) == [("alice", 30)]


def test_a_refund_of_a_gift_sent_before_the_battle_leaves_the_score(viewer, red, blue, rose):
    before = send(viewer, red, "m1", num=2)[0]
    battle = start(red, blue)
    send(viewer, red, "m2")

    gift_refund(event=before.event)

    assert scores(battle)["red"] == 10


def pk_top(battle, room) -> list[tuple[str, int]]:
    from engagement.selectors import pk_supporters

    side = PkSide.objects.get(battle=battle, room=room)
    return [(row["user_id"], row["coins"]) for row in pk_supporters([side]).get(side.pk, [])]


def test_each_side_has_its_top_three_supporters(red, blue, rose):
    fans = [ProfileFactory(user_id=f"fan{n}", coins=10_000) for n in range(5)]
    battle = start(red, blue)
    for n, fan in enumerate(fans):
        send(fan, red, f"r{n}", num=n + 1)
    send(fans[0], blue, "b0", num=7)

    assert pk_top(battle, red) == [("fan4", 50), ("fan3", 40), ("fan2", 30)]
    assert pk_top(battle, blue) == [("fan0", 70)]


def test_a_room_fights_one_battle_at_a_time(red, blue):
    green = RoomFactory(room_id="green")
    start(red, blue)

    with pytest.raises(PkConflict) as refused:
        start(green, blue)

    assert refused.value.code == 7200006
    assert PkBattle.objects.count() == 1 and Room.objects.get(pk=green.pk).pk_side is None


def test_rooms_off_air_or_unknown_cannot_fight(red, blue):
    room_go_off_air(room=blue)

    with pytest.raises(RoomUnavailable):
        start(red, blue)
    with pytest.raises(RoomUnavailable):
        pk_battle_start(room_ids=["red", "nowhere"], duration_s=60, source="server")
    assert not PkBattle.objects.exists()


def test_a_hosts_invite_runs_once_every_other_host_accepts(viewer, red, blue, rose):
    green = RoomFactory(room_id="green")
    battle = pk_battle_invite(host=red.host, room_ids=["red", "blue", "green"], duration_s=120)
    assert battle.state == "pending" and battle.starts_at is None
    send(viewer, red, "early")  # nothing runs yet

    pk_battle_answer(pk_id=battle.pk, host=blue.host, accept=True)
    assert PkBattle.objects.get(pk=battle.pk).state == "pending"
    pk_battle_answer(pk_id=battle.pk, host=green.host, accept=True)

    battle.refresh_from_db()
    assert battle.state == "running" and battle.ends_at == battle.starts_at + datetime.timedelta(seconds=120)
    send(viewer, red, "now")
    assert scores(battle) == {"red": 10, "blue": 0, "green": 0}
    assert pk_battle_answer(pk_id=battle.pk, host=green.host, accept=True).state == "running"  # again: as it is


def test_a_declined_invite_never_runs(red, blue):
    battle = pk_battle_invite(host=red.host, room_ids=["red", "blue"], duration_s=60)

    pk_battle_answer(pk_id=battle.pk, host=blue.host, accept=False)

    assert PkBattle.objects.get(pk=battle.pk).state == "declined"
    with pytest.raises(PkNotPending):
        pk_battle_answer(pk_id=battle.pk, host=blue.host, accept=True)
    assert Room.objects.filter(pk_side__isnull=False).count() == 0


def invite_sent_ago(battle: PkBattle, seconds: float) -> None:
    PkBattle.objects.filter(pk=battle.pk).update(created_at=timezone.now() - datetime.timedelta(seconds=seconds))


def test_an_invite_left_unanswered_past_its_time_is_declined_and_can_no_longer_start(red, blue, settings):
    settings.PK_INVITE_TTL_S = 60
    battle = pk_battle_invite(host=red.host, room_ids=["red", "blue"], duration_s=60)
    invite_sent_ago(battle, 61)

    with pytest.raises(PkNotPending):
        pk_battle_answer(pk_id=battle.pk, host=blue.host, accept=True)

    assert PkBattle.objects.get(pk=battle.pk).state == "declined"
    assert Room.objects.filter(pk_side__isnull=False).count() == 0


def test_an_invite_answered_in_time_still_runs(red, blue, settings):
    settings.PK_INVITE_TTL_S = 60
    battle = pk_battle_invite(host=red.host, room_ids=["red", "blue"], duration_s=60)
    invite_sent_ago(battle, 50)

    assert pk_battle_answer(pk_id=battle.pk, host=blue.host, accept=True).state == "running"


def test_the_pk_clock_declines_invites_nobody_answers(red, blue, settings):
    settings.PK_INVITE_TTL_S = 60
    stale = pk_battle_invite(host=red.host, room_ids=["red", "blue"], duration_s=60)
    invite_sent_ago(stale, 61)
    fresh = pk_battle_invite(host=blue.host, room_ids=["blue", "red"], duration_s=60)
    running = start(RoomFactory(room_id="green"), RoomFactory(room_id="white"))
    invite_sent_ago(running, 3600)  # a battle that started long ago is not an invite

    pk_battles_end_due()

    states = dict(PkBattle.objects.values_list("pk", "state"))
    assert states == {stale.pk: "declined", fresh.pk: "pending", running.pk: "running"}


def test_only_a_rooms_host_invites_and_answers(viewer, red, blue):
    with pytest.raises(NotRoomHost):
        pk_battle_invite(host=viewer, room_ids=["red", "blue"], duration_s=60)
    battle = pk_battle_invite(host=red.host, room_ids=["red", "blue"], duration_s=60)
    with pytest.raises(NotRoomHost):
        pk_battle_answer(pk_id=battle.pk, host=viewer, accept=True)


def test_accepting_when_a_room_is_already_fighting_is_7200006_and_the_invite_waits(red, blue):
    green = RoomFactory(room_id="green")
    battle = pk_battle_invite(host=red.host, room_ids=["red", "blue"], duration_s=60)
    start(blue, green)

    with pytest.raises(PkConflict):
        pk_battle_answer(pk_id=battle.pk, host=blue.host, accept=True)

    assert PkBattle.objects.get(pk=battle.pk).state == "pending"
    assert not PkSide.objects.get(battle=battle, room=blue).accepted_at


# --- the APIs -----------------------------------------------------------------------------------


def test_start_pk_through_the_server_api(client, red, blue):
    from gifts.models import ServerApp
    from gifts.tests.test_server_api import APP_ID, SECRET

    ServerApp.objects.create(app_id=APP_ID, name="business", secret=SECRET)
    answer = call(client, {"RoomIds": ["red", "blue"], "DurationS": 90}, action="StartPK")
    again = call(client, {"RoomIds": ["blue", "red"], "DurationS": 90}, action="StartPK")
    bad = call(client, {"RoomIds": ["red"], "DurationS": 90}, action="StartPK")

    assert answer["Code"] == 0, answer
    battle = PkBattle.objects.get()
    assert answer["Data"] == {"PkId": battle.pk, "EndsAt": battle.ends_at.isoformat().replace("+00:00", "Z")}
    assert (battle.source, battle.app.app_id, battle.duration_s) == ("server", APP_ID, 90)
    assert again["Code"] == 7200006 and "already in a running PK battle" in again["Message"]
    assert bad["Code"] == 7200003


def test_a_host_invites_and_the_other_accepts_over_rest(viewer, red, blue, rose, client_for, api_client):
    invite = client_for(red.host).post("/api/pk/", {"room_ids": ["red", "blue"], "duration_s": 60}, format="json")
    assert invite.status_code == 201, invite.content
    pk_id = invite.json()["pk_id"]
    assert invite.json()["state"] == "pending"
    assert [(side["room_id"], side["accepted"]) for side in invite.json()["sides"]] == [
        ("red", True),
        ("blue", False),
    ]

    accepted = client_for(blue.host).post(f"/api/pk/{pk_id}/accept/")
    send(viewer, blue, "m1", num=2)
    detail = api_client.get(f"/api/pk/{pk_id}/").json()

    assert accepted.status_code == 200 and accepted.json()["state"] == "running"
    assert detail["state"] == "running" and detail["winner_room_id"] is None
    assert detail["sides"][1] == {
        "room_id": "blue",
        "host_id": "blue-host",
        "accepted": True,
        "score": 20,
        "top": [{"user_id": "alice", "nickname": viewer.display_name, "coins": 20}],
    }
    room = api_client.get("/api/rooms/blue/").json()
    assert room["pk"]["pk_id"] == pk_id


def test_reading_a_battle_past_its_end_ends_it(viewer, red, blue, rose, api_client):
    battle = start(red, blue)
    send(viewer, red, "m1")
    PkBattle.objects.filter(pk=battle.pk).update(ends_at=timezone.now() - datetime.timedelta(seconds=1))

    detail = api_client.get(f"/api/pk/{battle.pk}/").json()

    assert (detail["state"], detail["winner_room_id"]) == ("ended", "red")
    assert GiftEvent.objects.filter(kind="pk_end").count() == 2
    events = api_client.get("/api/rooms/red/events/?since=0").json()["events"]
    assert [(event["seq"], event["kind"], event.get("pk_id"), event["sender"]) for event in events] == [
        (1, "gift", None, {"user_id": "alice", "nickname": viewer.display_name, "avatar": viewer.avatar}),
        (2, "pk_end", battle.pk, None),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"room_ids": ["red"], "duration_s": 60},
        {"room_ids": ["red", "red"], "duration_s": 60},
        {"room_ids": ["red", "blue"], "duration_s": 9},
        {"room_ids": ["red", "blue"], "duration_s": 3601},
        {"room_ids": ["red", "blue"], "duration_s": "60"},
        {"room_ids": [f"r{n}" for n in range(10)], "duration_s": 60},
        {"room_ids": "red,blue", "duration_s": 60},
        {},
    ],
)
def test_bad_invites_are_7200003_and_record_nothing(red, blue, client_for, body):
    response = client_for(red.host).post("/api/pk/", body, format="json")

    assert (response.status_code, response.json()["code"]) == (400, 7200003)
    assert not PkBattle.objects.exists()


def test_an_expired_invite_reads_as_declined_and_accepting_it_is_409(red, blue, client_for, api_client, settings):
    settings.PK_INVITE_TTL_S = 60
    invite = client_for(red.host).post("/api/pk/", {"room_ids": ["red", "blue"], "duration_s": 60}, format="json")
    pk_id = invite.json()["pk_id"]
    invite_sent_ago(PkBattle.objects.get(pk=pk_id), 61)

    assert api_client.get(f"/api/pk/{pk_id}/").json()["state"] == "declined"
    accepted = client_for(blue.host).post(f"/api/pk/{pk_id}/accept/")
    assert (accepted.status_code, accepted.json()["code"]) == (409, 7200003)


def test_api_refusals_have_their_codes(viewer, red, blue, client_for, api_client):
    start(red, blue)
    green = RoomFactory(room_id="green")

    busy = client_for(green.host).post("/api/pk/", {"room_ids": ["green", "red"], "duration_s": 60}, format="json")
    not_host = client_for(viewer).post("/api/pk/", {"room_ids": ["green", "red"], "duration_s": 60}, format="json")
    anonymous = api_client.post("/api/pk/", {"room_ids": ["green", "red"], "duration_s": 60}, format="json")
    missing = api_client.get("/api/pk/999999/")
    huge = api_client.get(f"/api/pk/{10**30}/")

    assert (busy.status_code, busy.json()["code"]) == (409, 7200006)
    assert (not_host.status_code, not_host.json()["code"]) == (403, 7200001)
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, 7200001)
    assert (missing.status_code, missing.json()["code"]) == (404, 7200004)
    assert huge.status_code == 404
