"""Setting a room's goal, running PK battles between rooms, and taking a refunded gift back from both.

Both run under the room row's lock, the lock every gift batch takes to number its events
(gifts.writer, step 3 of its lock order): a gift numbered before a goal starts counting
never counts, one numbered after always does, and the writer reads the goal's gift in the
same locked stretch. The goal row comes after the room row, as in the writer.
"""

import datetime
import functools
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from engagement.models import Goal, PkBattle, PkSide
from engagement.selectors import goal_payload
from gifting_site.errors import (
    GiftNotConfigured,
    MalformedRequest,
    NotRoomHost,
    PkConflict,
    PkNotFound,
    PkNotPending,
    RoomUnavailable,
)
from gifting_site.logs import fields
from gifts import broadcast, writer
from gifts.models import Gift, GiftEvent, Room, ServerApp
from gifts.selectors import event_payload
from rankings.models import RankingEntry
from wallets.models import Profile

logger = logging.getLogger(__name__)

MAX_GOAL_TARGET = 10**12


@transaction.atomic
def room_goal_set(*, room: Room, by: Profile | None, title: str, target: int, gift_id: str | None = None) -> Goal:
    """Set the goal of the room's live session: coins, or a count of the gift `gift_id`.

    `by` is the host, or None for staff. Changing only the title or the target keeps the
    progress; a target above the progress is a new one to reach, announced again when
    reached. Counting something else (another gift, or coins instead) starts again from 0
    with the next gift.
    """
    if by is not None and by.pk != room.host_id:
        raise NotRoomHost(f"only {room.host.user_id}, the host of {room.room_id}, may set its goal")
    gift = None
    if gift_id is not None:
        gift = Gift.objects.filter(gift_id=gift_id, is_active=True).first()
        if gift is None:
            raise GiftNotConfigured(f"gift_id: no active gift {gift_id}")
    # NO KEY, as a gift's UPDATE of the row locks: see gifts.writer.rooms_advance.
    room = Room.objects.select_for_update(no_key=True).get(pk=room.pk)
    if not room.is_live or room.current_session_id is None:
        raise RoomUnavailable(f"room {room.room_id} is not live: a goal is set for a live session")

    now = timezone.now()
    goal = Goal.objects.select_for_update().filter(live_session_id=room.current_session_id).first()
    if goal is None:
        goal = Goal(room=room, live_session_id=room.current_session_id, version=0)
    if goal.pk is None or goal.gift_id != (gift.pk if gift else None):
        goal.gift, goal.from_seq, goal.progress, goal.reached_at = gift, room.last_seq, 0, None
    goal.title, goal.target, goal.set_by = title, target, by
    if goal.progress < goal.target:
        goal.reached_at = None
    elif goal.reached_at is None:
        goal.reached_at = now
    goal.version += 1
    goal.save()
    if room.goal_id != goal.pk:
        Room.objects.filter(pk=room.pk).update(goal=goal)
    payload = goal_payload(goal, room_id=room.room_id, gift=gift)
    transaction.on_commit(lambda: broadcast.goal_changed(room.room_id, payload), robust=True)
    return goal


def goal_take_back(gift: GiftEvent) -> dict[str, Any] | None:
    """A refunded gift leaves the goal that counted it: the new state, or None if none did.

    Runs in the refund's transaction, after its `rooms_advance` took the room row.
    """
    goal = Goal.objects.filter(live_session_id=gift.live_session_id, from_seq__lt=gift.seq).first()
    if goal is None:
        return None
    changed = writer.goals_add([(goal.pk, gift.gift_id, -gift.coins, -gift.count)], at=timezone.now())
    if not changed or goal.pk != gift.room.goal_id:
        return None  # a goal of another gift; or of an earlier session, which viewers no longer see
    return goal_payload(changed[0], room_id=gift.room.room_id, gift=gift.gift if goal.gift_id else None)


# --- PK battles -------------------------------------------------------------------------------
#
# Lock order: the battle's row (answering an invite, ending), then its rooms' rows in primary-key
# order (gifts.writer's step 3), then its sides. A gift batch takes rooms then sides and never a
# battle, so the two can wait for each other but never deadlock.

MIN_PK_ROOMS, MAX_PK_ROOMS = 2, 9
MIN_PK_SECONDS, MAX_PK_SECONDS = 10, 3600


@transaction.atomic
def pk_battle_start(
    *,
    room_ids: list[str],
    duration_s: int,
    source: str,
    app: ServerApp | None = None,
    staff_user: Any = None,
) -> PkBattle:
    """A battle that runs at once (a business server's StartPK, or staff): every room has accepted.

    Raises PkConflict (7200006) when a room already fights a running battle, and
    RoomUnavailable when one is unknown or off air; nothing is recorded then.
    """
    rooms = _pk_rooms(room_ids, duration_s)
    now = timezone.now()
    battle = PkBattle.objects.create(duration_s=duration_s, source=source, app=app, started_by=staff_user)
    PkSide.objects.bulk_create([PkSide(battle=battle, room=room, host=room.host, accepted_at=now) for room in rooms])
    _pk_run(battle)
    return battle


@transaction.atomic
def pk_battle_invite(*, host: Profile, room_ids: list[str], duration_s: int) -> PkBattle:
    """A host invites the other rooms' hosts; the battle runs once every one has accepted.

    The inviter must host one of the rooms (NotRoomHost); its rooms have accepted already.
    A room that is busy or off air is refused now, though only the start itself is exact.
    """
    rooms = _pk_rooms(room_ids, duration_s)
    if not any(room.host_id == host.pk for room in rooms):
        raise NotRoomHost("a PK invite comes from the host of one of its rooms")
    for room in rooms:
        _pk_room_check(room)
    now = timezone.now()
    battle = PkBattle.objects.create(duration_s=duration_s, source=PkBattle.Source.HOST, invited_by=host)
    PkSide.objects.bulk_create(
        [
            PkSide(battle=battle, room=room, host=room.host, accepted_at=now if room.host_id == host.pk else None)
            for room in rooms
        ]
    )
    if all(room.host_id == host.pk for room in rooms):
        _pk_run(battle)
    return battle


def pk_battle_answer(*, pk_id: int, host: Profile, accept: bool) -> PkBattle:
    """A host invited to a battle accepts (it runs once all have) or declines (it never runs).

    Accepting again is answered with the battle as it stands. Raises NotRoomHost for anyone
    who hosts none of its rooms, PkNotPending once it was declined (or its invite expired)
    or is over.
    """
    pk_invites_expire()  # committed on its own: an expired invite stays declined whatever the answer
    return _pk_battle_answer(pk_id=pk_id, host=host, accept=accept)


def pk_invites_expire() -> int:
    """Decline the invites not every host accepted within PK_INVITE_TTL_S; how many.

    An invite waits for people, and people go off air or never look: one left pending would
    start a battle whenever its last host happened to answer, hours later. The PK clock runs
    this with every tick; answering an invite and reading a battle run it first.
    """
    cutoff = timezone.now() - datetime.timedelta(seconds=settings.PK_INVITE_TTL_S)
    expired = PkBattle.objects.filter(state=PkBattle.State.PENDING, created_at__lte=cutoff)
    # Looked for first: a read takes no write lock (SQLite locks the whole database for an UPDATE).
    return expired.update(state=PkBattle.State.DECLINED) if expired.exists() else 0


@transaction.atomic
def _pk_battle_answer(*, pk_id: int, host: Profile, accept: bool) -> PkBattle:
    battle = PkBattle.objects.select_for_update().filter(pk=pk_id).first()
    if battle is None:
        raise PkNotFound(f"PK battle {pk_id} not found")
    own = list(battle.sides.filter(host=host))
    if not own:
        raise NotRoomHost(f"only the hosts of PK battle {pk_id}'s rooms may answer its invite")
    if battle.state != PkBattle.State.PENDING:
        if accept and battle.state == PkBattle.State.RUNNING:
            return battle
        raise PkNotPending(f"PK battle {pk_id} is {battle.state}")
    if not accept:
        battle.state = PkBattle.State.DECLINED
        battle.save(update_fields=["state"])
        return battle
    if not battle.sides.filter(accepted_at=None).exclude(pk__in=[side.pk for side in own]).exists():
        _pk_run(battle)  # the last answer: the rooms' rows first, then the sides (the lock order)
    PkSide.objects.filter(pk__in=[side.pk for side in own], accepted_at=None).update(accepted_at=timezone.now())
    return battle


def _pk_rooms(room_ids: list[str], duration_s: int) -> list[Room]:
    if len(set(room_ids)) != len(room_ids):
        raise MalformedRequest("room_ids: each room at most once")
    if not MIN_PK_ROOMS <= len(room_ids) <= MAX_PK_ROOMS:
        raise MalformedRequest(f"room_ids: {MIN_PK_ROOMS} to {MAX_PK_ROOMS} rooms")
    if not MIN_PK_SECONDS <= duration_s <= MAX_PK_SECONDS:
        raise MalformedRequest(f"duration_s: {MIN_PK_SECONDS} to {MAX_PK_SECONDS} seconds")
    rooms = {room.room_id: room for room in Room.objects.select_related("host").filter(room_id__in=room_ids)}
    if missing := [room_id for room_id in room_ids if room_id not in rooms]:
        raise RoomUnavailable(f"room {missing[0]} not found")
    return [rooms[room_id] for room_id in room_ids]


def _pk_room_check(room: Room) -> None:
    if not room.is_live:
        raise RoomUnavailable(f"room {room.room_id} is not live")
    if room.pk_side_id is not None:
        raise PkConflict(f"room {room.room_id} is already in a running PK battle")


def _pk_run(battle: PkBattle) -> None:
    """Start the battle: each room's row names its side from now on, under the rooms' locks.

    The lock is what makes "a room is in at most one running PK" exact: of two starts for
    one room, the second reads the first's side here and is refused (7200006).
    """
    sides = {side.room_id: side for side in battle.sides.all()}
    rooms = list(Room.objects.select_for_update(no_key=True).filter(pk__in=sides).order_by("pk"))
    for room in rooms:
        _pk_room_check(room)
    for room in rooms:
        PkSide.objects.filter(pk=sides[room.pk].pk).update(start_seq=room.last_seq)
        Room.objects.filter(pk=room.pk).update(pk_side=sides[room.pk])
    battle.state = PkBattle.State.RUNNING
    battle.starts_at = timezone.now()
    battle.ends_at = battle.starts_at + datetime.timedelta(seconds=battle.duration_s)
    battle.save(update_fields=["state", "starts_at", "ends_at"])
    _pk_announce(battle)


def _pk_announce(battle: PkBattle) -> None:
    """Tell the battle's rooms it started or ended (viewers see running and ended battles only)."""
    room_ids = writer.pk_battle_rooms([battle.pk])[battle.pk]
    transaction.on_commit(lambda: broadcast.pk_changed(battle.pk, room_ids), robust=True)


def pk_battles_end_due() -> list[int]:
    """End every running battle whose time is up, each in its own transaction; their ids.

    Invites past their time are declined first (`pk_invites_expire`).

    Any number of processes may run this at once (every server process's clock does): each
    battle is claimed with SKIP LOCKED, and one that another process ended is no longer due.
    """
    pk_invites_expire()
    ended = []
    while PkBattle.objects.filter(state=PkBattle.State.RUNNING, ends_at__lte=timezone.now()).exists():
        pk_id = _pk_battle_end_next()
        if pk_id is None:
            break  # the due ones are being ended by other processes
        ended.append(pk_id)
    return ended


def pk_battle_settle(pk_id: int) -> None:
    """End the battle now if its time is up, so that a reader never sees a battle past its end running
    (nor an invite past its time pending)."""
    pk_invites_expire()
    if PkBattle.objects.filter(pk=pk_id, state=PkBattle.State.RUNNING, ends_at__lte=timezone.now()).exists():
        _pk_battle_end(pk_id)


@transaction.atomic(durable=True)
def _pk_battle_end_next() -> int | None:
    due = PkBattle.objects.select_for_update(skip_locked=True).filter(
        state=PkBattle.State.RUNNING, ends_at__lte=timezone.now()
    )
    battle = due.order_by("ends_at").first()
    if battle is None:
        return None
    _pk_end(battle)
    return battle.pk


@transaction.atomic(durable=True)
def _pk_battle_end(pk_id: int) -> None:
    battle = PkBattle.objects.select_for_update().get(pk=pk_id)
    if battle.state == PkBattle.State.RUNNING:  # else another process ended it while this waited
        _pk_end(battle)


def _pk_end(battle: PkBattle) -> None:
    """Each room gets a `pk_end` event with its next seq; from then on its gifts score for no one.

    `rooms_advance` takes the rooms' rows in pk order, as a gift batch does: a gift numbered
    before this event was added to its side's score in its own transaction, one numbered after
    finds the room's side cleared. The scores are final once the rows are held.
    """
    sides = list(battle.sides.select_related("room").order_by("pk"))
    advanced = writer.rooms_advance({side.room_id: 1 for side in sides})
    now = timezone.now()
    events = [
        GiftEvent(
            room=side.room,
            seq=advanced[side.room_id].first_seq,
            kind=GiftEvent.Kind.PK_END,
            pk_battle=battle,
            value=0,
            num=0,
            count=0,
            coins=0,
            combo=0,
            created_at=now,
        )
        for side in sides
    ]
    GiftEvent.objects.bulk_create(events)
    for side, event in zip(sides, events, strict=True):
        PkSide.objects.filter(pk=side.pk).update(end_seq=event.seq)
    Room.objects.filter(pk_side__in=sides).update(pk_side=None)
    scores = dict(PkSide.objects.filter(battle=battle).values_list("room_id", "score"))
    best = max(scores.values())
    leaders = [room_id for room_id, score in scores.items() if score == best]
    battle.state = PkBattle.State.ENDED
    battle.ended_at = now
    battle.winner_id = leaders[0] if len(leaders) == 1 else None
    battle.save(update_fields=["state", "ended_at", "winner"])
    for side, event in zip(sides, events, strict=True):
        payload = event_payload(event)
        transaction.on_commit(
            functools.partial(broadcast.gift_events_committed, side.room.room_id, [payload]), robust=True
        )
    _pk_announce(battle)
    logger.info(
        "PK battle %s ended", battle.pk, extra=fields(event="pk_end", pk_id=battle.pk, scores=list(scores.values()))
    )


def pk_take_back(gift: GiftEvent, pk_side_id: int | None) -> int | None:
    """A refunded gift leaves the score of the running battle it counted for: that battle's id, or None.

    `pk_side_id` is the room's side as the refund's `rooms_advance` read it under the room's
    lock. A battle that ended keeps its result: the gift preceded its `pk_end`, and the side
    is no longer the room's.
    """
    if pk_side_id is None:
        return None
    side = PkSide.objects.get(pk=pk_side_id)
    if side.start_seq is None or gift.seq <= side.start_seq:
        return None  # sent before the battle started
    writer.pk_scores_add({side.pk: -gift.coins}, at=timezone.now())
    RankingEntry.objects.filter(
        room_id=gift.room_id, period=RankingEntry.Period.PK, period_key=str(side.pk), profile_id=gift.sender_id
    ).update(coins=F("coins") - gift.coins)
    return side.battle_id
