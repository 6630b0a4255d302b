"""Setting a room's goal, and taking a refunded gift back from it.

Both run under the room row's lock, the lock every gift batch takes to number its events
(gifts.writer, step 3 of its lock order): a gift numbered before a goal starts counting
never counts, one numbered after always does, and the writer reads the goal's gift in the
same locked stretch. The goal row comes after the room row, as in the writer.
"""

from typing import Any

from django.db import transaction
from django.utils import timezone

from engagement.models import Goal
from engagement.selectors import goal_payload
from gifting_site.errors import GiftNotConfigured, NotRoomHost, RoomUnavailable
from gifts import broadcast, writer
from gifts.models import Gift, GiftEvent, Room
from wallets.models import Profile

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
    room = Room.objects.select_for_update().get(pk=room.pk)
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
    if not changed:  # a goal of another gift
        return None
    return goal_payload(changed[0], room_id=gift.room.room_id, gift=gift.gift if goal.gift_id else None)
