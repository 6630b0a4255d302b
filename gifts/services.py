"""Writes of the gifting domain: sending a gift, running rooms and their games."""

import dataclasses
import datetime
import functools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from engagement.selectors import goal_payload
from gifting_site import metrics
from gifting_site.errors import GameNotFound, GameNotStarted, MalformedRequest, NotRoomHost, RoomUnavailable
from gifting_site.logs import fields
from gifts import broadcast, writer
from gifts.group_commit import GroupCommit
from gifts.models import (
    FailedDelivery,
    GamePlayer,
    GameSession,
    Gift,
    GiftEvent,
    GiftReceipt,
    LiveSession,
    MiniGame,
    Room,
    RoomCohost,
    ServerApp,
    ValueTier,
)
from gifts.results import GiftOutcome, Result
from gifts.selectors import coins_spent_since, event_payload, game_state_payload, room_game_session, utc_midnight
from rankings.models import RankingEntry
from rankings.services import period_keys
from relay import outbox, wakeup
from wallets.models import Account, Profile, SpendingLimit, Transfer
from wallets.selectors import daily_limit
from wallets.services import (
    TransferConflict,
    platform_account,
    profile_get_or_create,
    profile_refresh,
    topup_create,
)

logger = logging.getLogger(__name__)

COMBO_WINDOW = datetime.timedelta(seconds=10)


@dataclass(frozen=True)
class GiftRequest:
    """One gift as a client asked for it, after its fields were checked for shape."""

    scope: str  # who owns the MsgId space: "user:<pk>" or "app:<AppId>"
    msg_id: str
    sender: Profile
    room: Room
    game_session: GameSession | None
    gift_code: str
    value: int
    num: int
    receiver_code: str | None = None
    # Bookkeeping for the failed-delivery queue.
    source: str = FailedDelivery.Source.VIEWER_API
    request_id: str = ""
    app: ServerApp | None = None
    raw_item: dict[str, Any] = field(default_factory=dict)


# --- request-level checks (nothing is recorded when they fail) ---------------------------------


def room_for_gifts(room_id: str) -> tuple[Room, GameSession | None]:
    """A live room to send gifts to, with its host, and its game session that has not ended."""
    found = writer.room_with_open_game(room_id)
    if found is None or not found[0].is_live:
        raise RoomUnavailable(f"room {room_id} not found or not live")
    return found


def game_for_gifts(room: Room, session: GameSession | None, mini_game_id: str | None = None) -> GameSession | None:
    """The game whose rules a send's gifts follow, given the room's open game session.

    A named game must be running and started in the room (7202001 / 7206001 otherwise).
    Without a name, a room whose game has started still applies the game's rules: leaving
    the id out must not be a way around the tiers.
    """
    if not mini_game_id:
        return session if session and session.state == GameSession.State.STARTED else None
    if session is None or session.mini_game.mini_game_id != mini_game_id:
        raise GameNotFound(f"game {mini_game_id} is not running in room {room.room_id}")
    if session.state != GameSession.State.STARTED:
        raise GameNotStarted(f"game {mini_game_id} in room {room.room_id} has not started")
    return session


# --- sending gifts -----------------------------------------------------------------------------


def gift_send(request: GiftRequest) -> GiftOutcome:
    """Apply one gift completely or not at all, and report what happened.

    The gift is written together with the other sends waiting in this process at the same
    moment (group commit, at most GIFT_GROUP_COMMIT_MAX per batch); alone, it is written at once.
    """
    return _grouped_sends.submit(request)


def gifts_send(requests: Sequence[GiftRequest]) -> list[GiftOutcome]:
    """Apply a batch of gifts in one transaction; one outcome per gift, in the order given.

    Each gift is decided on its own against the balances the gifts before it left, so a
    refused gift never fails its neighbours. Never raises for a per-gift problem: an
    unexpected error rolls the whole batch back and runs it again gift by gift, so only the
    gift that caused it answers 10005.
    """
    if not requests:
        return []
    try:
        started = time.perf_counter()
        outcomes = _batch_apply(list(requests))
        _batch_report(requests, outcomes, started)
        return outcomes
    except Exception:
        if len(requests) > 1:
            logger.exception("a batch of %d gifts failed; sending them one by one", len(requests))
            return [outcome for request in requests for outcome in gifts_send([request])]
    request = requests[0]
    logger.error("gift %s/%s failed unexpectedly", request.scope, request.msg_id)
    # Almost always the transaction rolled back. If the connection died during COMMIT the gift
    # may have landed; either way a retry with the same MsgId applies it at most once.
    outcome = GiftOutcome(Result.DELIVERY_EXCEPTION, "delivery exception; retry with the same MsgId", request.msg_id)
    metrics.GIFTS.labels(result=str(int(outcome.result))).inc()
    metrics.FAILED_DELIVERIES.labels(source=request.source).inc()
    try:
        with transaction.atomic():
            _failed_delivery(request, outcome.result, outcome.message).save()
    except Exception:
        logger.exception("could not record failed delivery %s/%s", request.scope, request.msg_id)
    return [outcome]


def _batch_report(requests: Sequence[GiftRequest], outcomes: list[GiftOutcome], started: float) -> None:
    """A committed batch in the metrics, and one log line: what it held, what was refused and why, how long."""
    refused = [outcome for outcome in outcomes if not outcome.ok]
    metrics.BATCH_GIFTS.observe(len(outcomes))
    metrics.GIFTS.labels(result="0").inc(len(outcomes) - len(refused))
    for code, count in Counter(int(outcome.result) for outcome in refused).items():
        metrics.GIFTS.labels(result=str(code)).inc(count)
    for source, count in Counter(
        request.source
        for request, outcome in zip(requests, outcomes, strict=True)
        if not outcome.ok and not outcome.replayed
    ).items():
        metrics.FAILED_DELIVERIES.labels(source=source).inc(count)
    for request, outcome in zip(requests, outcomes, strict=True):
        if outcome.ok and not outcome.replayed and outcome.event.coins >= settings.LARGE_GIFT_COINS:
            logger.warning(
                "large gift: %s coins from %s in room %s",
                outcome.event.coins,
                request.sender.user_id,
                request.room.room_id,
                extra=fields(
                    event="large_gift",
                    room=request.room.room_id,
                    seq=outcome.event.seq,
                    sender=request.sender.user_id,
                    msg_id=request.msg_id,
                    coins=outcome.event.coins,
                ),
            )
    if not logger.isEnabledFor(logging.INFO):
        return
    logger.info(
        "gift batch",
        extra=fields(
            event="gift_batch",
            gifts=len(outcomes),
            paid=len(outcomes) - len(refused),
            codes=dict(Counter(int(outcome.result) for outcome in refused)),
            refused=[{"msg_id": outcome.msg_id, "code": int(outcome.result)} for outcome in refused[:20]],
            rooms=sorted({request.room.room_id for request in requests}),
            request_ids=sorted({request.request_id for request in requests if request.request_id})[:20],
            ms=round((time.perf_counter() - started) * 1000, 1),
        ),
    )


_grouped_sends: GroupCommit[GiftRequest, GiftOutcome] = GroupCommit(
    gifts_send, max_batch=lambda: settings.GIFT_GROUP_COMMIT_MAX
)


@dataclass
class _Paid:
    """A gift the batch accepted: its price, and the balances it leaves behind it."""

    request: GiftRequest
    gift: Gift
    # The room's host, or the co-host the gift named: they get the share and the gift-wall count.
    receiver: Profile
    effect: str
    cost: int
    host_share: int
    coins_account: int
    coins_after: int
    # The host's earnings account and its balance after this gift; None when the share is 0.
    earnings_account: int | None
    earnings_after: int | None
    event: GiftEvent | None = None


@dataclass(frozen=True)
class _Refusal:
    result: Result
    message: str


@dataclass(frozen=True)
class _Replay:
    """A MsgId settled before: by a stored receipt, or by the gift at `index` earlier in this batch."""

    receipt: GiftReceipt | None = None
    index: int | None = None


_Decision = _Paid | _Refusal | _Replay


@transaction.atomic(durable=True)
def _batch_apply(requests: list[GiftRequest]) -> list[GiftOutcome]:
    claimed = writer.msg_ids_claim([f"gift:{request.scope}:{request.msg_id}" for request in requests])
    receipts = _receipts_of(requests)
    rules = _GiftRules(requests)
    # Lock order: user accounts now (pk order), the rooms' rows when the paid gifts are numbered.
    balances, limits = writer.accounts_lock(
        coins_of=(request.sender.pk for request in requests),
        earnings_of=(
            receiver.pk
            for request in requests
            if rules.host_share_possible(request) and (receiver := rules.receiver_of(request))
        ),
    )
    rules.allowances = _daily_allowances(requests, limits)

    decisions: list[_Decision] = []
    settled_at: dict[tuple[str, str], int] = {}  # MsgIds settled earlier in this batch -> index
    for index, request in enumerate(requests):
        key = (request.scope, request.msg_id)
        earlier = settled_at.get(key)
        if not claimed[index]:
            decisions.append(_Refusal(Result.IN_FLIGHT, "MsgId is being processed; retry later"))
        elif earlier is None and key not in receipts:
            settled_at[key] = index
            decisions.append(_gift_decide(request, rules, balances))
        elif _as_sent(request) == (
            _as_sent(requests[earlier]) if earlier is not None else _receipt_as_sent(receipts[key])
        ):
            decisions.append(_Replay(receipt=receipts.get(key), index=earlier))
        else:
            decisions.append(_Refusal(Result.MSG_ID_REUSED, "MsgId was already used for a different gift"))

    now = timezone.now()
    paid = [decision for decision in decisions if isinstance(decision, _Paid)]
    moved = _paid_write(paid, now) if paid else _Moved()
    refused = [
        (request, decision)
        for request, decision in zip(requests, decisions, strict=True)
        if isinstance(decision, _Refusal)
    ]
    # A final result settles its MsgId (a receipt); every refusal is queued for staff.
    receipts_new = [
        _receipt_row(gift.request, Result.SUCCESS, "success", gift.event, gift.coins_after) for gift in paid
    ]
    receipts_new += [
        _receipt_row(request, refusal.result, refusal.message, None, None)
        for request, refusal in refused
        if refusal.result.is_final
    ]
    if receipts_new:
        writer.receipts_insert(receipts_new, at=now)
    if refused:
        FailedDelivery.objects.bulk_create(
            [_failed_delivery(request, refusal.result, refusal.message) for request, refusal in refused]
        )
    if paid:
        _broadcast_on_commit(paid, moved)
    return [_outcome(index, requests, decisions) for index in range(len(requests))]


def _daily_allowances(requests: list[GiftRequest], own_limits: dict[int, SpendingLimit]) -> dict[int, int]:
    """{sender pk: coins} each sender with a daily limit may still spend today (UTC).

    Read once the senders' coins are locked: a sender's batches take turns, so each one
    counts every gift of theirs that committed before it.
    """
    now = timezone.now()
    limits = {
        sender: limit
        for sender in {request.sender.pk for request in requests}
        if (limit := daily_limit(own_limits.get(sender), now)) is not None
    }
    if not limits:
        return {}
    spent = coins_spent_since(limits, since=utc_midnight(now))
    return {sender: limit - spent.get(sender, 0) for sender, limit in limits.items()}


def _receipts_of(requests: list[GiftRequest]) -> dict[tuple[str, str], GiftReceipt]:
    """The receipts of the batch's MsgIds settled before: one statement, a second only for retries."""
    receipt_ids = writer.receipts_find((request.scope, request.msg_id) for request in requests)
    if not receipt_ids:
        return {}
    receipts = GiftReceipt.objects.filter(pk__in=receipt_ids).select_related(
        "event__sender", "event__receiver", "event__gift"
    )
    return {(receipt.scope, receipt.msg_id): receipt for receipt in receipts}


def _as_sent(request: GiftRequest) -> tuple[Any, ...]:
    """What a retry must repeat exactly: who, where, which gift to whom, how many."""
    sender, room = request.sender.pk, request.room.pk
    return (sender, room, request.gift_code, request.receiver_code or "", request.value, request.num)


def _receipt_as_sent(receipt: GiftReceipt) -> tuple[Any, ...]:
    return (receipt.sender_id, receipt.room_id, receipt.gift_code, receipt.receiver_code, receipt.value, receipt.num)


class _GiftRules:
    """What the per-gift rules read, for the whole batch at once: the gifts, tiers and players."""

    def __init__(self, requests: list[GiftRequest]):
        self.gifts = writer.gifts_active(request.gift_code for request in requests)
        # What senders with a daily limit may still spend; set once their coins are locked.
        self.allowances: dict[int, int] = {}
        # The co-hosts the batch names as receivers, read only when a gift names someone besides the host.
        named = {
            (request.room.pk, request.receiver_code)
            for request in requests
            if request.receiver_code and request.receiver_code != request.room.host.user_id
        }
        self.cohosts: dict[tuple[int, str], Profile] = {}
        if named:
            cohosts = RoomCohost.objects.filter(
                room_id__in={room for room, _ in named}, profile__user_id__in={user for _, user in named}
            ).select_related("profile")
            self.cohosts = {(cohost.room_id, cohost.profile.user_id): cohost.profile for cohost in cohosts}
        sessions = {request.game_session.pk: request.game_session for request in requests if request.game_session}
        self.tiers: dict[tuple[int, int], dict[int, str]] = {}
        self.players: set[tuple[int, int]] = set()
        if sessions:
            tiers = ValueTier.objects.filter(
                mini_game_id__in={session.mini_game_id for session in sessions.values()},
                gift_id__in=[gift.pk for gift in self.gifts.values()],
            )
            for mini_game_id, gift_id, value, effect in tiers.values_list("mini_game_id", "gift_id", "value", "effect"):
                self.tiers.setdefault((mini_game_id, gift_id), {})[value] = effect
            self.players = set(
                GamePlayer.objects.filter(
                    session_id__in=sessions, profile_id__in={request.sender.pk for request in requests}
                ).values_list("session_id", "profile_id")
            )

    def host_share_possible(self, request: GiftRequest) -> bool:
        """Whether this gift, if accepted, credits its receiver: only then is their account locked."""
        gift = self.gifts.get(request.gift_code)
        return gift is not None and _host_share(gift.price * request.value * request.num) > 0

    def receiver_of(self, request: GiftRequest) -> Profile | None:
        """Who the gift is for: the room's host unless it names a co-host; None if it names anyone else."""
        host = request.room.host
        if not request.receiver_code or request.receiver_code == host.user_id:
            return host
        return self.cohosts.get((request.room.pk, request.receiver_code))


def _gift_decide(
    request: GiftRequest, rules: _GiftRules, balances: dict[tuple[int, str], tuple[int, int]]
) -> _Paid | _Refusal:
    """The per-gift rules of SPEC section 2, then the payment against the running balances."""
    gift = rules.gifts.get(request.gift_code)
    if gift is None:
        return _Refusal(Result.GIFT_NOT_CONFIGURED, f"gift {request.gift_code} is not configured")

    sender, host, receiver = request.sender, request.room.host, rules.receiver_of(request)
    if receiver is None:
        return _Refusal(
            Result.DELIVERY_FAILED, f"receiver {request.receiver_code} is not the room's host or one of its co-hosts"
        )
    if sender.pk == host.pk:
        return _Refusal(Result.DELIVERY_FAILED, "a host cannot send gifts to their own room")
    if sender.pk == receiver.pk:
        return _Refusal(Result.DELIVERY_FAILED, "nobody can send a gift to themselves")

    session, effect = request.game_session, ""
    if session is None:
        if request.value != 1:
            return _Refusal(Result.GIFT_NOT_CONFIGURED, "Value must be 1 outside a mini-game")
    else:
        tiers = rules.tiers.get((session.mini_game_id, gift.pk), {})
        if request.value not in tiers:
            valid = ", ".join(str(value) for value in sorted(tiers)) or "none"
            return _Refusal(
                Result.GIFT_NOT_CONFIGURED,
                f"Value {request.value} is not configured for gift {gift.gift_id} in {session.mini_game}; "
                f"valid Values: {valid}",
            )
        if (session.pk, sender.pk) not in rules.players:
            return _Refusal(Result.DELIVERY_FAILED, f"user {sender.user_id} has not joined the game")
        effect = tiers[request.value]

    cost = gift.price * request.value * request.num
    if (owed := balances.get((sender.pk, Account.Kind.RECEIVABLE))) and owed[1] > 0:
        return _Refusal(
            Result.ON_HOLD, f"account on hold: {owed[1]} coins are owed for a reversed top-up; a top-up pays them"
        )
    allowance = rules.allowances.get(sender.pk)
    if allowance is not None and cost > allowance:
        return _Refusal(
            Result.SPENDING_LIMIT,
            f"daily spending limit reached: {max(allowance, 0)} coins left today, {cost} needed",
        )
    coins_account, coins = balances[(sender.pk, Account.Kind.COINS)]
    if coins < cost:
        return _Refusal(Result.INSUFFICIENT_BALANCE, f"insufficient balance: {coins} coins, {cost} needed")
    balances[(sender.pk, Account.Kind.COINS)] = (coins_account, coins - cost)
    if allowance is not None:
        rules.allowances[sender.pk] = allowance - cost
    host_share = _host_share(cost)
    earnings_account, earnings = None, None
    if host_share:
        earnings_account, earnings = balances[(receiver.pk, Account.Kind.EARNINGS)]
        earnings += host_share
        balances[(receiver.pk, Account.Kind.EARNINGS)] = (earnings_account, earnings)
    return _Paid(
        request=request,
        gift=gift,
        receiver=receiver,
        effect=effect,
        cost=cost,
        host_share=host_share,
        coins_account=coins_account,
        coins_after=coins - cost,
        earnings_account=earnings_account,
        earnings_after=earnings,
    )


def _host_share(cost: int) -> int:
    return cost * settings.HOST_SHARE_PERCENT // 100


@dataclass
class _Moved:
    """What a batch moved besides its events, for the viewers: goals' new states, and PK battles."""

    goals: list[dict[str, Any]] = field(default_factory=list)
    battles: dict[int, list[str]] = field(default_factory=dict)  # battle id -> its rooms' public ids


def _paid_write(paid: list[_Paid], now: datetime.datetime) -> _Moved:
    """Pay for, number and count every accepted gift of the batch, with one statement of each kind;
    what it moved besides, for the broadcast.

    The ledger is written first, while only the accounts are locked: a room's row is taken
    last and held for as short a time as the batch allows, since every gift to the room
    queues behind it.
    """
    transfer_ids = _ledger_write(paid, now)
    rooms = writer.rooms_advance(Counter(gift.request.room.pk for gift in paid))
    # Read after the rooms are locked: no other gift to these rooms can commit in between.
    combos = writer.combos_latest(
        ((gift.request.room.pk, gift.request.sender.pk) for gift in paid), since=now - COMBO_WINDOW
    )
    rankings: Counter[tuple[int, str, str, int]] = Counter()
    gift_walls: Counter[tuple[int, int]] = Counter()
    pk_scores: Counter[int] = Counter()
    next_seq = {room_id: advance.first_seq for room_id, advance in rooms.items()}
    for gift in paid:
        request = gift.request
        room, sender, receiver = request.room, request.sender, gift.receiver
        previous = combos.get((room.pk, sender.pk))
        combo = previous[1] + 1 if previous and previous[0] == gift.gift.pk else 1
        combos[(room.pk, sender.pk)] = (gift.gift.pk, combo)
        count = request.value * request.num
        gift.event = GiftEvent(
            room=room,
            seq=next_seq[room.pk],
            msg_id=request.msg_id,
            sender=sender,
            receiver=receiver,
            gift=gift.gift,
            game_session=request.game_session,
            live_session_id=rooms[room.pk].live_session_id,
            value=request.value,
            num=request.num,
            count=count,
            coins=gift.cost,
            effect=gift.effect,
            combo=combo,
            transfer_id=transfer_ids[_transfer_reference(request)],
            created_at=now,
        )
        next_seq[room.pk] += 1
        for period, key in period_keys(live_session_id=rooms[room.pk].live_session_id, at=now).items():
            rankings[(room.pk, str(period), key, sender.pk)] += gift.cost
        if (pk_side_id := rooms[room.pk].pk_side_id) is not None:
            # The room fights a PK battle: the gift scores for its side, and its sender supports it.
            pk_scores[pk_side_id] += gift.cost
            rankings[(room.pk, str(RankingEntry.Period.PK), str(pk_side_id), sender.pk)] += gift.cost
        gift_walls[(receiver.pk, gift.gift.pk)] += count

    writer.events_insert([gift.event for gift in paid])
    writer.rankings_add(dict(rankings), at=now)
    writer.gift_wall_add(dict(gift_walls))
    goal_rows = [
        (goal_id, gift.gift.pk, gift.cost, gift.event.count)
        for gift in paid
        if (goal_id := rooms[gift.request.room.pk].goal_id) is not None
    ]
    goals = writer.goals_add(goal_rows, at=now) if goal_rows else []
    battles = writer.pk_scores_add(dict(pk_scores), at=now) if pk_scores else set()
    # Gifts to a relayed game are owed to the game from this commit on (relay.outbox), and
    # the relays hear of them when it happens.
    relayed = [gift.event for gift in paid if gift.request.game_session and gift.request.game_session.mini_game.relay]
    if relayed:
        writer.deliveries_insert([outbox.delivery_row(event) for event in relayed], at=now)
        wakeup.relays_wake()
    moved = _Moved(battles=writer.pk_battle_rooms(battles) if battles else {})
    if goals:
        public_ids = {gift.request.room.pk: gift.request.room.room_id for gift in paid}
        gifts_by_pk = {gift.gift.pk: gift.gift for gift in paid}
        moved.goals = [
            goal_payload(goal, room_id=public_ids[goal.room_id], gift=gifts_by_pk.get(goal.gift_id)) for goal in goals
        ]
    return moved


def _ledger_write(paid: list[_Paid], now: datetime.datetime) -> dict[str, int]:
    """One balanced transfer per gift: the sender pays, the host and the platform share. {reference: id}."""
    revenue_account = writer.platform_account_id(Account.Kind.REVENUE) or platform_account(Account.Kind.REVENUE).pk
    transfers, entries = [], []
    balance_changes: Counter[int] = Counter()
    for gift in paid:
        reference = _transfer_reference(gift.request)
        platform_cut = gift.cost - gift.host_share
        transfers.append((Transfer.Kind.GIFT, reference, ""))
        entries.append(writer.LedgerEntry(reference, gift.coins_account, -gift.cost, gift.coins_after))
        if gift.host_share:
            entries.append(writer.LedgerEntry(reference, gift.earnings_account, gift.host_share, gift.earnings_after))
        if platform_cut:
            entries.append(writer.LedgerEntry(reference, revenue_account, platform_cut, None))
        balance_changes[gift.coins_account] -= gift.cost
        if gift.host_share:
            balance_changes[gift.earnings_account] += gift.host_share
    return writer.ledger_write(transfers, entries, dict(balance_changes), at=now)


def _transfer_reference(request: GiftRequest) -> str:
    return f"gift:{request.scope}:{request.msg_id}"


def _receipt_row(
    request: GiftRequest, result: Result, message: str, event: GiftEvent | None, coins_balance: int | None
) -> tuple[Any, ...]:
    """A receipt in writer.RECEIPT_COLUMNS order, without created_at."""
    return (
        request.scope,
        request.msg_id,
        request.sender.pk,
        request.room.pk,
        request.gift_code,
        request.receiver_code or "",
        request.value,
        request.num,
        int(result),
        message[:300],
        event.pk if event else None,
        coins_balance,
    )


def _broadcast_on_commit(paid: list[_Paid], moved: _Moved) -> None:
    payloads: dict[str, list[dict[str, Any]]] = {}
    for gift in paid:
        payloads.setdefault(gift.request.room.room_id, []).append(event_payload(gift.event))
    goal_of = {goal["room_id"]: goal for goal in moved.goals}
    # A battle's rooms in this batch hear of it with their gifts; its other rooms on their own.
    pk_of = {room_id: battle_id for battle_id, room_ids in moved.battles.items() for room_id in room_ids}
    for battle_id, room_ids in moved.battles.items():
        if others := [room_id for room_id in room_ids if room_id not in payloads]:
            transaction.on_commit(functools.partial(broadcast.pk_changed, battle_id, others), robust=True)
    for room_id, events in payloads.items():
        # robust: the gifts are committed by the time this runs, and the database is the source
        # of truth. A broadcast that fails (Redis down) is logged by Django and must never turn
        # paid gifts into an error; viewers catch up with `since` once broadcasting works again.
        transaction.on_commit(
            functools.partial(
                broadcast.gift_events_committed, room_id, events, goal=goal_of.get(room_id), pk_id=pk_of.get(room_id)
            ),
            robust=True,
        )


def _outcome(index: int, requests: list[GiftRequest], decisions: list[_Decision]) -> GiftOutcome:
    request, decision = requests[index], decisions[index]
    if isinstance(decision, _Paid):
        return GiftOutcome(
            Result.SUCCESS, "success", request.msg_id, event=decision.event, coins_balance=decision.coins_after
        )
    if isinstance(decision, _Refusal):
        return GiftOutcome(decision.result, decision.message, request.msg_id)
    if decision.index is not None:
        return dataclasses.replace(_outcome(decision.index, requests, decisions), replayed=True)
    receipt = decision.receipt
    return GiftOutcome(
        Result(receipt.result),
        receipt.message,
        receipt.msg_id,
        event=receipt.event,
        coins_balance=receipt.coins_balance,
        replayed=True,
    )


def _failed_delivery(request: GiftRequest, result: Result, message: str) -> FailedDelivery:
    return FailedDelivery(
        source=request.source,
        request_id=request.request_id,
        app=request.app,
        sender=request.sender,
        user_code=request.sender.user_id,
        room=request.room,
        mini_game_code=request.game_session.mini_game.mini_game_id if request.game_session else "",
        msg_id=request.msg_id,
        gift_code=request.gift_code,
        receiver_code=request.receiver_code or "",
        value=request.value,
        num=request.num,
        code=result,
        message=message[:300],
        raw_item=request.raw_item,
    )


# --- rooms and games ---------------------------------------------------------------------------


# A room's co-hosts at most: a multi-guest live seats up to 9 with its host.
MAX_COHOSTS = 8


@transaction.atomic
def cohosts_refusal(room: Room, user_ids: list[str]) -> str | None:
    """Why these people (distinct public ids) cannot be the room's co-hosts, or None: at most
    MAX_COHOSTS, and never the host. The host's API and the staff's admin both ask."""
    if len(user_ids) > MAX_COHOSTS:
        return f"at most {MAX_COHOSTS} co-hosts"
    if room.host.user_id in user_ids:
        return "the host is not a co-host of their own room"
    return None


def room_cohosts_set(*, room: Room, by: Profile, user_ids: list[str]) -> list[Profile]:
    """The host names the room's co-hosts (replacing the previous ones); gifts may name them as receiver.

    Raises NotRoomHost for anyone but the host, MalformedRequest naming an unknown person,
    the host themselves or too many.
    """
    if by.pk != room.host_id:
        raise NotRoomHost(f"only {room.host.user_id}, the host of {room.room_id}, may name its co-hosts")
    wanted = list(dict.fromkeys(user_ids))
    if refusal := cohosts_refusal(room, wanted):
        raise MalformedRequest(f"user_ids: {refusal}")
    people = {profile.user_id: profile for profile in Profile.objects.filter(user_id__in=wanted)}
    if unknown := [user_id for user_id in wanted if user_id not in people]:
        raise MalformedRequest(f"user_ids: no such user {', '.join(unknown[:5])}")
    # The room row orders concurrent changes of the list: the last one wins whole. A gift
    # already being decided when a co-host is removed may still pay them, as it would a
    # moment earlier.
    Room.objects.select_for_update().only("pk").get(pk=room.pk)
    RoomCohost.objects.filter(room=room).exclude(profile__user_id__in=wanted).delete()
    RoomCohost.objects.bulk_create(
        [RoomCohost(room=room, profile=people[user_id]) for user_id in wanted], ignore_conflicts=True
    )
    return [people[user_id] for user_id in wanted]


@transaction.atomic
def room_go_live(*, room: Room) -> Room:
    """Start a new broadcast; the `live` leaderboard starts from zero."""
    room = Room.objects.select_for_update().get(pk=room.pk)
    if room.is_live:
        return room
    session = LiveSession.objects.create(room=room)
    Room.objects.filter(pk=room.pk).update(is_live=True, current_session=session, goal=None)
    room.is_live, room.current_session, room.goal = True, session, None
    return room


@transaction.atomic
def room_go_off_air(*, room: Room) -> Room:
    room = Room.objects.select_for_update().get(pk=room.pk)
    if not room.is_live:
        return room
    LiveSession.objects.filter(pk=room.current_session_id).update(ended_at=timezone.now())
    Room.objects.filter(pk=room.pk).update(is_live=False)
    room.is_live = False
    return room


@transaction.atomic
def game_session_open(*, room: Room, mini_game: MiniGame) -> GameSession:
    """A new game session waiting for players; a room runs one game at a time."""
    if room_game_session(room) is not None:
        raise ValueError(f"room {room.room_id} already has a game session open")
    session = GameSession.objects.create(room=room, mini_game=mini_game)
    _game_state_broadcast(session)
    return session


@transaction.atomic
def game_session_start(*, session: GameSession) -> GameSession:
    session = GameSession.objects.select_for_update().select_related("room", "mini_game").get(pk=session.pk)
    if session.state != GameSession.State.WAITING:
        raise ValueError(f"game session {session.pk} is {session.state}, not waiting")
    session.state, session.started_at = GameSession.State.STARTED, timezone.now()
    GameSession.objects.filter(pk=session.pk).update(state=session.state, started_at=session.started_at)
    _game_state_broadcast(session)
    return session


@transaction.atomic
def game_session_end(*, session: GameSession) -> GameSession:
    session = GameSession.objects.select_for_update().select_related("room", "mini_game").get(pk=session.pk)
    if session.state == GameSession.State.ENDED:
        return session
    session.state, session.ended_at = GameSession.State.ENDED, timezone.now()
    GameSession.objects.filter(pk=session.pk).update(state=session.state, ended_at=session.ended_at)
    _game_state_broadcast(session)
    return session


def game_join(*, room: Room, profile: Profile) -> GameSession:
    """Join the room's open game session (waiting or started); joining twice is harmless."""
    session = room_game_session(room)
    if session is None:
        raise GameNotFound(f"no game is running in room {room.room_id}")
    try:
        with transaction.atomic():
            session.players.add(profile)
    except IntegrityError:
        pass  # joined a moment ago by a parallel request
    return session


def _game_state_broadcast(session: GameSession) -> None:
    room_id = session.room.room_id
    payload = game_state_payload(session)
    transaction.on_commit(lambda: broadcast.game_state_changed(room_id, payload))


# --- server API (SendDanmakuGifts-compatible) --------------------------------------------------


@dataclass(frozen=True)
class ServerGift:
    """One item of a SendDanmakuGifts GiftList, after its shape was checked."""

    msg_id: str
    user_id: str
    gift_code: str
    value: int
    num: int
    receiver_code: str | None = None
    # None: not sent, so the person's stored value is kept.
    nickname: str | None = None
    avatar: str | None = None
    sex: int | None = None
    raw_item: dict[str, Any] = field(default_factory=dict)


def server_gifts_send(
    *, app: ServerApp, request_id: str, room: Room, game_session: GameSession | None, gifts: list[ServerGift]
) -> list[GiftOutcome]:
    """Send a SendDanmakuGifts GiftList as one batch; one outcome per gift, in order.

    A gift whose sender cannot even be set up answers 10005 on its own; the others go
    through `gifts_send` together, each all-or-nothing on its own.
    """
    senders = _server_senders(gifts, request_id)
    requests = [
        GiftRequest(
            scope=f"app:{app.app_id}",
            msg_id=gift.msg_id,
            sender=senders[gift.user_id],
            room=room,
            game_session=game_session,
            gift_code=gift.gift_code,
            value=gift.value,
            num=gift.num,
            receiver_code=gift.receiver_code,
            source=FailedDelivery.Source.SERVER_API,
            request_id=request_id,
            app=app,
            raw_item=gift.raw_item,
        )
        for gift in gifts
        if senders[gift.user_id] is not None
    ]
    sent = iter(gifts_send(requests))
    return [
        next(sent)
        if senders[gift.user_id] is not None
        else _server_gift_unsendable(app, request_id, room, game_session, gift)
        for gift in gifts
    ]


def _server_senders(gifts: list[ServerGift], request_id: str) -> dict[str, Profile | None]:
    """Each UserId's person, made if new and refreshed with what the batch says of them; None if that failed.

    One read for the whole batch; a write only for a newcomer or changed UserInfo.
    """
    senders: dict[str, Profile | None] = dict(writer.profiles_by_user_id(gift.user_id for gift in gifts))
    for gift in gifts:
        try:
            if gift.user_id not in senders:
                senders[gift.user_id] = profile_get_or_create(
                    user_id=gift.user_id, nickname=gift.nickname, avatar=gift.avatar, sex=gift.sex
                )
            elif (profile := senders[gift.user_id]) is not None:
                profile_refresh(profile, nickname=gift.nickname, avatar=gift.avatar, sex=gift.sex)
        except Exception:
            logger.exception("server API %s: could not find or create user %s", request_id, gift.user_id)
            senders[gift.user_id] = None
    return senders


def _server_gift_unsendable(
    app: ServerApp, request_id: str, room: Room, game_session: GameSession | None, gift: ServerGift
) -> GiftOutcome:
    """10005 for a gift whose sender could not even be set up; queued for staff like any failure."""
    outcome = GiftOutcome(Result.DELIVERY_EXCEPTION, "delivery exception; nothing was charged", gift.msg_id)
    try:
        FailedDelivery.objects.create(
            source=FailedDelivery.Source.SERVER_API,
            request_id=request_id,
            app=app,
            user_code=gift.user_id,
            room=room,
            mini_game_code=game_session.mini_game.mini_game_id if game_session else "",
            msg_id=gift.msg_id,
            gift_code=gift.gift_code,
            receiver_code=gift.receiver_code or "",
            value=gift.value,
            num=gift.num,
            code=outcome.result,
            message=outcome.message,
            raw_item=gift.raw_item,
        )
    except Exception:
        logger.exception("could not record failed delivery app:%s/%s", app.app_id, gift.msg_id)
    return outcome


def server_topup(*, app: ServerApp, user_id: str, amount: int, reference: str) -> tuple[Profile, bool]:
    """Credit coins a business server's user paid for, once per (app, Reference).

    Returns the person and whether this call credited them. A Reference already used for
    another person or amount raises TransferConflict and creates nobody.
    """
    full_reference = app_reference(app, reference)
    profile = Profile.objects.filter(user_id=user_id).first()
    if profile is None and Transfer.objects.filter(reference=f"topup:{full_reference}").exists():
        raise TransferConflict(f"Reference {reference} was used for a different top-up")
    if profile is None:
        profile = profile_get_or_create(user_id=user_id)
    try:
        _, created = topup_create(profile=profile, amount=amount, reference=full_reference)
    except IntegrityError:
        # The same Reference committed in a parallel call a moment ago: answer as a retry would.
        _, created = topup_create(profile=profile, amount=amount, reference=full_reference)
    return profile, created


def app_reference(app: ServerApp, reference: str) -> str:
    """A business server's payment Reference, in the app's own space (TopUp, ReverseTopUp, Payout)."""
    return f"app:{app.app_id}:{reference}"


# --- the failed-delivery queue (staff) ---------------------------------------------------------


class ResendRefused(Exception):
    """A failed delivery that cannot be re-sent (already done, or nobody to send it as)."""


def failed_delivery_resolve(*, deliveries: QuerySet[FailedDelivery], staff_user: Any) -> int:
    """Mark open failed deliveries as dealt with, and by whom; already resolved ones keep their mark."""
    return deliveries.filter(resolved_at__isnull=True).update(resolved_at=timezone.now(), resolved_by=staff_user)


def failed_delivery_resend(*, failed: FailedDelivery, staff_user: Any) -> GiftOutcome:
    """Send the gift of a failed delivery again, as a new gift with a new MsgId, through `gift_send`.

    The room and game are checked as the original API would (RequestError when the room is
    off air or the game is over); the sender pays as usual. A success resolves the row.

    One failed gift is paid at most once however often, and by however many staff, it is
    re-sent:

    - a re-send that fails is queued as a row of its own; re-sending that row re-sends the
      gift it was a re-send of, so the two rows cannot each be paid;
    - the original MsgId may have been paid after all (a 10005 or 10006 answer did not
      settle it): then nothing is sent;
    - an attempt whose outcome is not known yet (still running, cut off, or answered with a
      result that does not settle its MsgId) is repeated under its own MsgId, which the
      gift's receipt answers at most once. Only an attempt refused for good makes way for a
      new MsgId.
    """
    original = _resend_original(failed)
    if original.source == FailedDelivery.Source.VENDOR:
        raise ResendRefused("the game refused a gift that was paid for: deliver it again instead")
    if original.room_id is None:
        raise ResendRefused("this failed delivery names no room")
    sender = original.sender or Profile.objects.filter(user_id=original.user_code).first()
    if sender is None:
        raise ResendRefused(f"user {original.user_code} does not exist")
    app = original.app
    scope = f"app:{app.app_id}" if app else f"user:{sender.pk}"
    paid = GiftReceipt.objects.filter(scope=scope, msg_id=original.msg_id, result=Result.SUCCESS).first()
    if paid is not None:
        raise ResendRefused(f"MsgId {original.msg_id} was paid after all (room seq {paid.event.seq})")
    room, session = room_for_gifts(original.room.room_id)
    game_session = game_for_gifts(room, session, original.mini_game_code)

    with transaction.atomic():
        claimed = FailedDelivery.objects.select_for_update().get(pk=original.pk)
        # A re-send's own row re-sent successfully counts too (rows queued before re-sends went
        # through their original).
        if (
            claimed.resend_result == Result.SUCCESS
            or FailedDelivery.objects.filter(raw_item__resend_of=claimed.pk, resend_result=Result.SUCCESS).exists()
        ):
            raise ResendRefused("this failed delivery was already re-sent")
        unsettled = claimed.resent_msg_id and (
            claimed.resend_result is None or not Result(claimed.resend_result).is_final
        )
        msg_id = claimed.resent_msg_id if unsettled else f"resend-{claimed.pk}-{uuid.uuid4().hex[:12]}"
        FailedDelivery.objects.filter(pk=claimed.pk).update(resent_msg_id=msg_id, resend_result=None)

    outcome = gift_send(
        GiftRequest(
            scope=scope,
            msg_id=msg_id,
            sender=sender,
            room=room,
            game_session=game_session,
            gift_code=original.gift_code,
            value=original.value,
            num=original.num,
            receiver_code=original.receiver_code or None,
            source=FailedDelivery.Source.STAFF,
            request_id=f"staff-{uuid.uuid4().hex[:12]}",
            app=app,
            raw_item={"resend_of": original.pk, "original": original.raw_item},
        )
    )
    changes: dict[str, Any] = {"resend_result": outcome.result}
    if outcome.ok:
        changes |= {"resolved_at": timezone.now(), "resolved_by": staff_user}
    # A repeat of an attempt that succeeded meanwhile (answered 10006) must not overwrite its success.
    FailedDelivery.objects.filter(pk=original.pk, resent_msg_id=msg_id).exclude(resend_result=Result.SUCCESS).update(
        **changes
    )
    if outcome.ok and failed.pk != original.pk:
        failed_delivery_resolve(deliveries=FailedDelivery.objects.filter(pk=failed.pk), staff_user=staff_user)
    for name, value in changes.items():
        setattr(original, name, value)
    original.resent_msg_id = msg_id
    return outcome


def _resend_original(failed: FailedDelivery) -> FailedDelivery:
    """The failed delivery a staff re-send's own failure was a re-send of (the row itself otherwise)."""
    seen = {failed.pk}
    while failed.source == FailedDelivery.Source.STAFF and (parent := failed.raw_item.get("resend_of")) not in seen:
        earlier = FailedDelivery.objects.select_related("room", "sender", "app").filter(pk=parent).first()
        if earlier is None:
            break
        seen.add(earlier.pk)
        failed = earlier
    return failed
