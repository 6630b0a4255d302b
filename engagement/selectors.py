"""Reads of a room's goal and PK battles, in the shapes viewers get them (SPEC section 11)."""

import datetime
from typing import Any

from django.db.models import Case, F, OuterRef, QuerySet, Subquery, Sum, When, Window
from django.db.models.functions import Coalesce, RowNumber

from engagement.models import Goal, PkBattle, PkSide
from gifts.models import Gift, GiftEvent, Room
from rankings.models import RankingEntry
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


# --- PK battles -------------------------------------------------------------------------------

PK_TOP_SUPPORTERS = 3


def pk_payload(battle: PkBattle) -> dict[str, Any]:
    """A battle as the API and the `pk` websocket message show it, with each side's top supporters.

    `at` is when a score or the state last changed, so a viewer can tell how fresh it is.
    """
    sides = list(battle.sides.select_related("room", "host").order_by("pk"))
    top = pk_supporters(sides)
    changed = [side.updated_at for side in sides] + [battle.ended_at or battle.starts_at or battle.created_at]
    return {
        "pk_id": battle.pk,
        "state": battle.state,
        "starts_at": _iso(battle.starts_at),
        "ends_at": _iso(battle.ends_at),
        "winner_room_id": battle.winner.room_id if battle.winner_id else None,
        "at": _iso(max(changed)),
        "sides": [
            {
                "room_id": side.room.room_id,
                "host_id": side.host.user_id,
                "accepted": side.accepted_at is not None,
                "score": side.score,
                "top": top.get(side.pk, []),
            }
            for side in sides
        ],
    }


def pk_supporters(sides: list[PkSide]) -> dict[int, list[dict[str, Any]]]:
    """Each side's top supporters, {side pk: [{user_id, nickname, coins}]}, in one query.

    A side's supporters are its room's `pk` board keyed by the side's id; ties go to whoever
    got there first, as on every leaderboard. The viewers' `pk` messages read this up to
    once a window, so it is one statement however many sides there are.
    """
    ranked = (
        RankingEntry.objects.filter(
            room_id__in=[side.room_id for side in sides],
            period=RankingEntry.Period.PK,
            period_key__in=[str(side.pk) for side in sides],
            coins__gt=0,
        )
        .annotate(
            place=Window(
                RowNumber(),
                partition_by=F("period_key"),
                order_by=[F("coins").desc(), F("reached_at").asc(), F("id").asc()],
            )
        )
        .filter(place__lte=PK_TOP_SUPPORTERS)
        .select_related("profile")
        .order_by("period_key", "place")
    )
    top: dict[int, list[dict[str, Any]]] = {}
    for entry in ranked:
        top.setdefault(int(entry.period_key), []).append(
            {"user_id": entry.profile.user_id, "nickname": entry.profile.display_name, "coins": entry.coins}
        )
    return top


def pk_state(pk_id: int) -> dict[str, Any] | None:
    """The battle with this id as the API and the `pk` message show it; None if there is none."""
    battle = PkBattle.objects.select_related("winner").filter(pk=pk_id).first()
    return None if battle is None else pk_payload(battle)


def room_pk(room: Room) -> dict[str, Any] | None:
    """The PK battle the room fights now, if any."""
    if room.pk_side_id is None:
        return None
    battle = PkBattle.objects.select_related("winner").get(sides=room.pk_side_id)
    return pk_payload(battle)


def _iso(at: datetime.datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")
