"""Reads of the gifting domain, and the one shape of each thing a client receives."""

import datetime
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, F, Max, OuterRef, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from engagement.selectors import room_goal, room_pk
from gifting_site.errors import SendNotFound
from gifts.models import GameSession, Gift, GiftEvent, GiftReceipt, HostGiftCount, Room, RoomCohost
from relay.selectors import deliveries_of, delivery_payload  # the relay's one door into what senders read
from wallets.models import Account, Entry, Profile, SpendingLimit, Transfer
from wallets.selectors import AuditCheck, audit_check, daily_limit, own_daily_limit

# How many events a client may ask to replay at once, and how many a snapshot carries.
REPLAY_LIMIT = 500
SNAPSHOT_RECENT = 20
# What `event_payload` reads of an event's relations.
EVENT_RELATED = ("sender", "receiver", "gift", "reverses")


def gift_payload(gift: Gift) -> dict[str, Any]:
    return {
        "gift_id": gift.gift_id,
        "name": gift.name,
        "price": gift.price,
        "icon": gift.icon,
        "animation": {"format": gift.animation_format, "url": gift.animation_url},
    }


def person_payload(profile: Profile) -> dict[str, Any]:
    """A person as other viewers see them: next to a gift, in a room's hosts."""
    return {"user_id": profile.user_id, "nickname": profile.display_name, "avatar": profile.avatar}


def event_payload(event: GiftEvent) -> dict[str, Any]:
    """A room event as every client sees it: REST answers, resync and the websocket alike.

    A reversal repeats its gift's sender, gift, count and coins, and names its seq in
    `reverses_seq`: a client takes those coins back off its totals. A `pk_end` names its
    battle in `pk_id` and has no sender, gift or coins.
    """
    if event.kind == GiftEvent.Kind.PK_END:
        return {
            "seq": event.seq,
            "kind": event.kind,
            "reverses_seq": None,
            "pk_id": event.pk_battle_id,
            "msg_id": "",
            "sender": None,
            "receiver_id": None,
            "gift": None,
            "value": 0,
            "num": 0,
            "count": 0,
            "coins": 0,
            "effect": "",
            "combo": 0,
            "at": event.created_at.isoformat().replace("+00:00", "Z"),
        }
    gift = gift_payload(event.gift)
    del gift["price"]
    return {
        "seq": event.seq,
        "kind": event.kind,
        "reverses_seq": event.reverses.seq if event.reverses_id else None,
        "msg_id": event.msg_id,
        "sender": person_payload(event.sender),
        "receiver_id": event.receiver.user_id,
        "gift": gift,
        "value": event.value,
        "num": event.num,
        "count": event.count,
        "coins": event.coins,
        "effect": event.effect,
        "combo": event.combo,
        "at": event.created_at.isoformat().replace("+00:00", "Z"),
    }


def game_state_payload(session: GameSession | None) -> dict[str, Any] | None:
    if session is None:
        return None
    return {
        "mini_game_id": session.mini_game.mini_game_id,
        "name": session.mini_game.name,
        "state": session.state,
        "session_id": session.pk,
    }


def active_gifts() -> QuerySet[Gift]:
    return Gift.objects.filter(is_active=True).order_by("sort_order", "price", "gift_id")


def room_game_session(room: Room) -> GameSession | None:
    # At most one session per room is not ended (a constraint), so no ordering is needed.
    sessions = GameSession.objects.select_related("mini_game").filter(room=room).exclude(state=GameSession.State.ENDED)
    return next(iter(sessions[:1]), None)


def room_cohosts(room: Room) -> list[Profile]:
    return [cohost.profile for cohost in RoomCohost.objects.filter(room=room).select_related("profile").order_by("pk")]


def room_detail(room: Room) -> dict[str, Any]:
    return {
        "room_id": room.room_id,
        "title": room.title,
        "host": person_payload(room.host),
        "cohosts": [person_payload(profile) for profile in room_cohosts(room)],
        "is_live": room.is_live,
        "seq": room.last_seq,
        "game": game_state_payload(room_game_session(room)),
        "goal": room_goal(room),
        "pk": room_pk(room),
    }


def events_after(
    room: Room, *, since: int, until: int | None = None, limit: int = REPLAY_LIMIT
) -> list[dict[str, Any]]:
    """Events with seq in (since, until], oldest first."""
    events = GiftEvent.objects.filter(room=room, seq__gt=since)
    if until is not None:
        events = events.filter(seq__lte=until)
    events = events.select_related(*EVENT_RELATED).order_by("seq")[:limit]
    return [event_payload(event) for event in events]


def room_events_after(room_id: str, *, since: int, until: int | None = None) -> list[dict[str, Any]]:
    """`events_after` for a room named by its public id; none for an unknown room."""
    room = Room.objects.filter(room_id=room_id).first()
    return [] if room is None else events_after(room, since=since, until=until)


def recent_events(room: Room, *, limit: int = SNAPSHOT_RECENT) -> list[dict[str, Any]]:
    """The room's newest events, oldest first."""
    events = GiftEvent.objects.filter(room=room).select_related(*EVENT_RELATED).order_by("-seq")[:limit]
    return [event_payload(event) for event in reversed(events)]


def host_gift_wall(host_id: int) -> list[dict[str, Any]]:
    counts = (
        # A gift whose every one was refunded is off the wall.
        HostGiftCount.objects.filter(host_id=host_id, count__gt=0)
        .select_related("gift")
        .order_by("gift__sort_order", "gift__gift_id")
    )
    return [{**gift_payload(row.gift), "count": row.count} for row in counts]


def send_detail(receipt: GiftReceipt) -> dict[str, Any]:
    """A settled send as its sender sees it: its result, its event, and its game delivery."""
    event = receipt.event
    delivery = deliveries_of([event.pk]).get(event.pk) if event else None
    return {
        "msg_id": receipt.msg_id,
        "result": receipt.result,
        "message": receipt.message,
        "coins_balance": receipt.coins_balance,
        "event": event_payload(event) if event else None,
        "delivery": delivery_payload(delivery),
        "refunded": event is not None and GiftEvent.objects.filter(reverses=event).exists(),
    }


def sends_describe(*, scope: str, msg_ids: list[str]) -> list[dict[str, Any]]:
    """DescribeDanmakuMsgResults: each MsgId's billing result and game delivery, in the order asked.

    Only settled MsgIds have a result; one never sent, still in flight or refused without
    being settled (10005, 10006, 10008) answers 10010, as a MsgId that was never seen.
    """
    receipts = {receipt.msg_id: receipt for receipt in GiftReceipt.objects.filter(scope=scope, msg_id__in=set(msg_ids))}
    deliveries = deliveries_of(receipt.event_id for receipt in receipts.values() if receipt.event_id)
    described = []
    for msg_id in msg_ids:
        receipt = receipts.get(msg_id)
        delivery = delivery_payload(deliveries.get(receipt.event_id) if receipt else None)
        described.append(
            {
                "MsgId": msg_id,
                "Result": receipt.result if receipt else SendNotFound.code,
                "Msg": receipt.message if receipt else "MsgId not found",
                "Delivery": {"Status": delivery["status"], "Code": delivery["code"], "Message": delivery["message"]},
            }
        )
    return described


def coins_spent_since(sender_ids: Iterable[int], *, since: datetime.datetime) -> dict[int, int]:
    """{sender pk: coins} each sender spent on gifts since `since`; a refunded gift no longer counts."""
    spent = (
        GiftEvent.objects.filter(
            sender_id__in=set(sender_ids), kind=GiftEvent.Kind.GIFT, created_at__gte=since, reversal__isnull=True
        )
        .values("sender_id")
        .annotate(coins=Sum("coins"))
    )
    return {row["sender_id"]: row["coins"] for row in spent}


def utc_midnight(at: datetime.datetime) -> datetime.datetime:
    """The start of `at`'s UTC day: daily spending limits and `day` leaderboards count from it."""
    return at.astimezone(datetime.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def spending_limit_detail(profile: Profile) -> dict[str, Any]:
    """The person's daily spending limits, the one in force, and what they spent today (UTC)."""
    now = timezone.now()
    limit = SpendingLimit.objects.filter(profile=profile).first()
    raise_pending = limit is not None and limit.raised_from is not None and now < limit.raised_from
    in_force = daily_limit(limit, now)
    spent = coins_spent_since([profile.pk], since=utc_midnight(now)).get(profile.pk, 0)
    return {
        "daily_coins": own_daily_limit(limit, now),
        "pending": (
            {"daily_coins": limit.raised_daily_coins, "from": limit.raised_from.isoformat().replace("+00:00", "Z")}
            if raise_pending
            else None
        ),
        "staff_daily_coins": limit.staff_daily_coins if limit else None,
        "everyone_daily_coins": settings.GIFT_DAILY_LIMIT,
        "effective_daily_coins": in_force,
        "spent_today": spent,
        "left_today": None if in_force is None else max(in_force - spent, 0),
    }


HOST_STATEMENT_COLUMNS = ["host", "day", "gifts", "coins", "earnings", "refunds", "payouts", "earnings_after"]
# The statement columns of what leaves a host's earnings, shown as positive amounts.
TAKEN_FROM_EARNINGS = {Transfer.Kind.REFUND: "refunds", Transfer.Kind.PAYOUT: "payouts"}


# Hosts per round of host_statements' queries: SQLite takes at most 999 parameters in one statement.
STATEMENT_HOSTS_PER_QUERY = 200


def host_statements(hosts: list[Profile]) -> Iterator[list[Any]]:
    """host_statement_lines for any number of hosts, a few hundred at a time."""
    for start in range(0, len(hosts), STATEMENT_HOSTS_PER_QUERY):
        yield from host_statement_lines(hosts[start : start + STATEMENT_HOSTS_PER_QUERY])


def host_statement_lines(hosts: list[Profile]) -> list[list[Any]]:
    """Each host's days (UTC) with anything to report, in HOST_STATEMENT_COLUMNS order.

    `gifts` and `coins` are the gifts received that day and what they cost their senders;
    `earnings` what those gifts paid the host; `refunds` what refunds took back from the
    earnings and `payouts` what was paid out (both positive); `earnings_after` the
    earnings balance at the day's last movement.
    """
    host_ids = [host.pk for host in hosts]
    day = TruncDate("created_at", tzinfo=datetime.UTC)
    received = (
        GiftEvent.objects.filter(receiver_id__in=host_ids, kind=GiftEvent.Kind.GIFT)
        .annotate(day=day)
        .values("receiver_id", "day")
        .annotate(gifts=Count("id"), coins=Sum("coins"))
    )
    moved = (
        Entry.objects.filter(account__profile_id__in=host_ids, account__kind=Account.Kind.EARNINGS)
        .annotate(day=day)
        .values("account__profile_id", "day", "transfer__kind")
        .annotate(amount=Sum("amount"), last=Max("id"))
    )
    lines: dict[tuple[int, datetime.date], dict[str, int]] = defaultdict(Counter)
    for row in received:
        line = lines[(row["receiver_id"], row["day"])]
        line["gifts"], line["coins"] = row["gifts"], row["coins"]
    last_entry: dict[tuple[int, datetime.date], int] = {}
    for row in moved:
        key = (row["account__profile_id"], row["day"])
        if row["transfer__kind"] in TAKEN_FROM_EARNINGS:
            lines[key][TAKEN_FROM_EARNINGS[row["transfer__kind"]]] -= row["amount"]
        else:
            lines[key]["earnings"] += row["amount"]
        last_entry[key] = max(last_entry.get(key, 0), row["last"])
    last_ids = sorted(last_entry.values())
    balances = {
        pk: balance
        for start in range(0, len(last_ids), 500)
        for pk, balance in Entry.objects.filter(pk__in=last_ids[start : start + 500]).values_list("pk", "balance_after")
    }
    user_ids = {host.pk: host.user_id for host in hosts}
    return [
        [
            user_ids[host_id],
            day_,
            *(lines[(host_id, day_)][column] for column in ("gifts", "coins", "earnings", "refunds", "payouts")),
            balances.get(last_entry.get((host_id, day_))),
        ]
        for host_id, day_ in sorted(lines, key=lambda key: (user_ids[key[0]], key[1]))
    ]


def gifts_audit() -> list[AuditCheck]:
    """Every gift is paid by its own transfer, every refund gives back its own gift, and no transfer is orphaned."""
    sender_paid = Entry.objects.filter(
        transfer_id=OuterRef("transfer_id"),
        account__profile_id=OuterRef("sender_id"),
        account__kind=Account.Kind.COINS,
        amount=-OuterRef("coins"),
    )
    gifts = GiftEvent.objects.filter(kind=GiftEvent.Kind.GIFT)
    unpaid = gifts.exclude(Exists(sender_paid)).order_by("pk").values_list("pk", flat=True)
    orphans = (
        Transfer.objects.filter(kind=Transfer.Kind.GIFT)
        .exclude(gift_event__kind=GiftEvent.Kind.GIFT)
        .order_by("pk")
        .values_list("pk", flat=True)
    )

    sender_refunded = Entry.objects.filter(
        transfer_id=OuterRef("transfer_id"),
        account__profile_id=OuterRef("sender_id"),
        account__kind=Account.Kind.COINS,
        amount=OuterRef("coins"),
    )
    reversals = GiftEvent.objects.filter(kind=GiftEvent.Kind.REVERSAL)
    # A reversal gives back exactly what its own gift cost, to that gift's sender, in that room.
    unmatched = reversals.exclude(
        reverses__kind=GiftEvent.Kind.GIFT,
        reverses__room_id=F("room_id"),
        reverses__sender_id=F("sender_id"),
        reverses__coins=F("coins"),
        transfer__kind=Transfer.Kind.REFUND,
    ) | reversals.exclude(Exists(sender_refunded))
    refund_orphans = (
        Transfer.objects.filter(kind=Transfer.Kind.REFUND)
        .exclude(gift_event__kind=GiftEvent.Kind.REVERSAL)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    gift_count, reversal_count = gifts.count(), reversals.count()
    return [
        audit_check(
            "every gift event has its transfer, debiting the sender what it cost",
            f"{gift_count} gift events",
            unpaid,
            "gift event",
        ),
        audit_check(
            "every gift transfer has its gift event",
            f"{Transfer.objects.filter(kind=Transfer.Kind.GIFT).count()} gift transfers",
            orphans,
            "transfer",
        ),
        audit_check(
            "every refund reverses its own gift, crediting its sender what it cost",
            f"{reversal_count} refunds",
            unmatched.order_by("pk").values_list("pk", flat=True).distinct(),
            "reversal event",
        ),
        audit_check(
            "every refund transfer has its reversal event",
            f"{Transfer.objects.filter(kind=Transfer.Kind.REFUND).count()} refund transfers",
            refund_orphans,
            "transfer",
        ),
    ]
