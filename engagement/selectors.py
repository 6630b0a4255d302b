"""Reads of a room's goal, in the shape viewers get it (the `goal` websocket message, SPEC section 11)."""

from typing import Any

from django.db.models import Case, F, OuterRef, QuerySet, Subquery, Sum, When
from django.db.models.functions import Coalesce

from engagement.models import Goal
from gifts.models import Gift, GiftEvent, Room
from wallets.selectors import AuditCheck, audit_check


def goal_payload(goal: Goal, *, room_id: str, gift: Gift | None) -> dict[str, Any]:
    """What viewers are told of a goal; `goal_id` and `version` order its states (newest wins)."""
    return {
        "room_id": room_id,
        "goal_id": goal.pk,
        "title": goal.title,
        "target": goal.target,
        "gift": None if gift is None else {"gift_id": gift.gift_id, "name": gift.name, "icon": gift.icon},
        "progress": goal.progress,
        "reached": goal.reached_at is not None,
        "version": goal.version,
    }


def room_goal(room: Room) -> dict[str, Any] | None:
    """The goal of the room's newest live session, if its host set one."""
    if room.goal_id is None:
        return None
    goal = Goal.objects.select_related("gift").get(pk=room.goal_id)
    return goal_payload(goal, room_id=room.room_id, gift=goal.gift)


def goal_recount(goals: QuerySet[Goal]) -> QuerySet[Goal]:
    """These goals with `recount`: their progress counted again from the room's events.

    A goal counts its live session's gifts after `from_seq` that were not refunded: their
    coins, or their count where it counts one gift.
    """
    counted = GiftEvent.objects.filter(
        room_id=OuterRef("room_id"),
        live_session_id=OuterRef("live_session_id"),
        kind=GiftEvent.Kind.GIFT,
        seq__gt=OuterRef("from_seq"),
        refund__isnull=True,
    )
    coins = counted.values("room_id").annotate(total=Sum("coins")).values("total")
    of_its_gift = counted.filter(gift_id=OuterRef("gift_id")).values("room_id").annotate(total=Sum("count"))
    return goals.annotate(
        recount=Case(
            When(gift__isnull=True, then=Coalesce(Subquery(coins), 0)),
            default=Coalesce(Subquery(of_its_gift.values("total")), 0),
        )
    )


def goals_audit() -> list[AuditCheck]:
    """Every goal's progress is what its gifts add up to, less refunds (for ledger_check)."""
    wrong = goal_recount(Goal.objects.all()).exclude(progress=F("recount")).order_by("pk").values_list("pk", flat=True)
    return [
        audit_check(
            "every goal's progress is its gifts counted again, less refunds",
            f"{Goal.objects.count()} goals",
            wrong,
            "goal",
        )
    ]
