"""Writes of the gifting domain: sending a gift, running rooms and their games."""

import datetime
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from gifting_site.errors import GameNotFound, GameNotStarted, RoomUnavailable
from gifts import broadcast
from gifts.models import (
    FailedDelivery,
    GameSession,
    Gift,
    GiftEvent,
    GiftReceipt,
    HostGiftCount,
    LiveSession,
    MiniGame,
    Room,
    ServerApp,
    ValueTier,
)
from gifts.results import GiftOutcome, Result
from gifts.selectors import event_payload, game_state_payload, room_game_session
from rankings.services import ranking_add
from wallets.models import Account, Profile, Transfer
from wallets.services import (
    InsufficientBalance,
    TransferConflict,
    accounts_of,
    profile_get_or_create,
    topup_create,
    transfer_create,
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


class _Refused(Exception):
    """A per-gift rule said no; carries the result to store."""

    def __init__(self, result: Result, message: str):
        self.result = result
        self.message = message


# --- request-level checks (nothing is recorded when they fail) ---------------------------------


def room_for_gifts(room_id: str) -> Room:
    # A slice, not .first(): room_id is unique, and ordering the query only costs CPU.
    room = next(iter(Room.objects.select_related("host").filter(room_id=room_id)[:1]), None)
    if room is None or not room.is_live:
        raise RoomUnavailable(f"room {room_id} not found or not live")
    return room


def game_for_gifts(room: Room, mini_game_id: str) -> GameSession:
    """The started game session a server-API batch names (7202001 / 7206001 otherwise)."""
    session = room_game_session(room)
    if session is None or session.mini_game.mini_game_id != mini_game_id:
        raise GameNotFound(f"game {mini_game_id} is not running in room {room.room_id}")
    if session.state != GameSession.State.STARTED:
        raise GameNotStarted(f"game {mini_game_id} in room {room.room_id} has not started")
    return session


# --- sending a gift ----------------------------------------------------------------------------


def gift_send(request: GiftRequest) -> GiftOutcome:
    """Apply one gift completely or not at all, and report what happened.

    Never raises for a per-gift problem: an unexpected error rolls the gift back and is
    reported as 10005, so one bad gift cannot spoil the others in a batch.
    """
    try:
        return _gift_apply(request)
    except Exception:
        logger.exception("gift %s/%s failed unexpectedly", request.scope, request.msg_id)
        # Almost always the transaction rolled back. If the connection died during COMMIT the
        # gift may have landed; either way a retry with the same MsgId applies it at most once.
        outcome = GiftOutcome(
            Result.DELIVERY_EXCEPTION, "delivery exception; retry with the same MsgId", request.msg_id
        )
        try:
            with transaction.atomic():
                _failed_delivery_create(request, outcome.result, outcome.message)
        except Exception:
            logger.exception("could not record failed delivery %s/%s", request.scope, request.msg_id)
        return outcome


@transaction.atomic(durable=True)
def _gift_apply(request: GiftRequest) -> GiftOutcome:
    if not _msg_id_claim(request.scope, request.msg_id):
        return _refusal(request, Result.IN_FLIGHT, "MsgId is being processed; retry later")

    receipt_id = _receipt_id(request.scope, request.msg_id)
    if receipt_id is not None:
        receipt = GiftReceipt.objects.get(pk=receipt_id)
        if not _receipt_matches(receipt, request):
            return _refusal(request, Result.MSG_ID_REUSED, "MsgId was already used for a different gift")
        event = None
        if receipt.event_id is not None:
            event = GiftEvent.objects.select_related("sender", "receiver", "gift").get(pk=receipt.event_id)
        return GiftOutcome(
            Result(receipt.result),
            receipt.message,
            receipt.msg_id,
            event=event,
            coins_balance=receipt.coins_balance,
            replayed=True,
        )

    try:
        gift, effect = _gift_check(request)
        event, coins_balance = _gift_pay_and_record(request, gift, effect)
    except _Refused as refused:
        _receipt_create(request, refused.result, refused.message)
        _failed_delivery_create(request, refused.result, refused.message)
        return GiftOutcome(refused.result, refused.message, request.msg_id)

    _receipt_create(request, Result.SUCCESS, "success", event=event, coins_balance=coins_balance)
    payload = event_payload(event)
    # robust: the gift is committed by the time this runs, and the database is the source of
    # truth. A broadcast that fails (Redis down) is logged by Django and must never turn a
    # paid gift into an error; viewers catch up with `since` once broadcasting works again.
    transaction.on_commit(lambda: broadcast.gift_event_committed(request.room.room_id, payload), robust=True)
    return GiftOutcome(Result.SUCCESS, "success", request.msg_id, event=event, coins_balance=coins_balance)


def _msg_id_claim(scope: str, msg_id: str) -> bool:
    """Take the MsgId for this transaction; False if another transaction holds it right now.

    On PostgreSQL a transaction-scoped advisory lock answers at once instead of waiting on
    the other transaction's receipt row, so a concurrent duplicate gets 10006. SQLite runs
    one writer at a time, so there is nothing to claim.
    """
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", [f"gift:{scope}:{msg_id}"])
        return cursor.fetchone()[0]


def _receipt_matches(receipt: GiftReceipt, request: GiftRequest) -> bool:
    return (
        receipt.sender_id == request.sender.pk
        and receipt.room_id == request.room.pk
        and receipt.gift_code == request.gift_code
        and receipt.receiver_code == (request.receiver_code or "")
        and receipt.value == request.value
        and receipt.num == request.num
    )


def _gift_check(request: GiftRequest) -> tuple[Gift, str]:
    """The per-gift rules of SPEC section 2. Returns the gift and the effect it summons."""
    gift = _gift_active(request.gift_code)
    if gift is None:
        raise _Refused(Result.GIFT_NOT_CONFIGURED, f"gift {request.gift_code} is not configured")

    host = request.room.host
    if request.receiver_code and request.receiver_code != host.user_id:
        raise _Refused(Result.DELIVERY_FAILED, f"receiver {request.receiver_code} is not the room's host")
    if request.sender.pk == host.pk:
        raise _Refused(Result.DELIVERY_FAILED, "a host cannot send gifts to their own room")

    session = request.game_session
    if session is None:
        if request.value != 1:
            raise _Refused(Result.GIFT_NOT_CONFIGURED, "Value must be 1 outside a mini-game")
        return gift, ""

    tiers = dict(ValueTier.objects.filter(mini_game_id=session.mini_game_id, gift=gift).values_list("value", "effect"))
    if request.value not in tiers:
        valid = ", ".join(str(value) for value in sorted(tiers)) or "none"
        raise _Refused(
            Result.GIFT_NOT_CONFIGURED,
            f"Value {request.value} is not configured for gift {gift.gift_id} in {session.mini_game}; "
            f"valid Values: {valid}",
        )
    if not session.players.filter(pk=request.sender.pk).exists():
        raise _Refused(Result.DELIVERY_FAILED, f"user {request.sender.user_id} has not joined the game")
    return gift, tiers[request.value]


def _gift_pay_and_record(request: GiftRequest, gift: Gift, effect: str) -> tuple[GiftEvent, int]:
    room, sender, host = request.room, request.sender, request.room.host
    count = request.value * request.num
    cost = gift.price * count
    host_share = cost * settings.HOST_SHARE_PERCENT // 100

    # The three accounts of the gift in one read; transfer_create then locks the two user rows.
    accounts = accounts_of(profile_ids=[sender.pk, host.pk], platform_kind=Account.Kind.REVENUE)
    payer = accounts[(sender.pk, Account.Kind.COINS)]
    legs = [
        (payer, -cost),
        (accounts[(host.pk, Account.Kind.EARNINGS)], host_share),
        (accounts[(None, Account.Kind.REVENUE)], cost - host_share),
    ]
    # Lock order: user accounts in pk order (inside transfer_create), then the room row below.
    # Every gift takes them in this order, so gifts between any rooms cannot deadlock.
    try:
        transfer = transfer_create(
            kind=Transfer.Kind.GIFT,
            reference=f"gift:{request.scope}:{request.msg_id}",
            legs=[(account, amount) for account, amount in legs if amount != 0],
        )
    except InsufficientBalance as short:
        raise _Refused(
            Result.INSUFFICIENT_BALANCE, f"insufficient balance: {short.account.balance} coins, {cost} needed"
        ) from None

    seq, live_session_id = _room_next_seq(room)
    now = timezone.now()
    event = GiftEvent(
        room=room,
        seq=seq,
        msg_id=request.msg_id,
        sender=sender,
        receiver=host,
        gift=gift,
        game_session=request.game_session,
        value=request.value,
        num=request.num,
        count=count,
        coins=cost,
        effect=effect,
        combo=_combo_next(room_id=room.pk, sender_id=sender.pk, gift_id=gift.pk, now=now),
        transfer=transfer,
        created_at=now,
    )
    _row_insert(event)
    ranking_add(room_id=room.pk, live_session_id=live_session_id, profile_id=sender.pk, coins=cost, at=now)
    _host_gift_count_add(host_id=host.pk, gift_id=gift.pk, count=count)
    return event, payer.balance


def _room_next_seq(room: Room) -> tuple[int, int | None]:
    """Take the room's next sequence number; the row lock it takes lasts until commit.

    Holding that lock until commit is what makes seqs contiguous in commit order: the next
    gift in this room cannot number itself until this one is visible.
    """
    table = Room._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_seq = last_seq + 1 WHERE id = %s RETURNING last_seq, current_session_id",
            [room.pk],
        )
        seq, live_session_id = cursor.fetchone()
    room.last_seq = seq
    return seq, live_session_id


def _host_gift_count_add(*, host_id: int, gift_id: int, count: int) -> None:
    table = HostGiftCount._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (host_id, gift_id, count) VALUES (%s, %s, %s) "
            f"ON CONFLICT (host_id, gift_id) DO UPDATE SET count = {table}.count + excluded.count",
            [host_id, gift_id, count],
        )


def _receipt_create(
    request: GiftRequest,
    result: Result,
    message: str,
    *,
    event: GiftEvent | None = None,
    coins_balance: int | None = None,
) -> GiftReceipt:
    receipt = GiftReceipt(
        scope=request.scope,
        msg_id=request.msg_id,
        sender=request.sender,
        room=request.room,
        gift_code=request.gift_code,
        receiver_code=request.receiver_code or "",
        value=request.value,
        num=request.num,
        result=result,
        message=message,
        event=event,
        coins_balance=coins_balance,
        created_at=timezone.now(),
    )
    _row_insert(receipt)
    return receipt


# --- the hot path's reads and writes in plain SQL -----------------------------------------------
# Every gift runs these. Building the equivalent ORM query cost about 0.3 ms of CPU each on the
# benchmark machine, five times what the database took to answer; the SQL is kept to what
# both PostgreSQL and SQLite (3.35+, for RETURNING) understand.


def _receipt_id(scope: str, msg_id: str) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {GiftReceipt._meta.db_table} WHERE scope = %s AND msg_id = %s", [scope, msg_id])
        row = cursor.fetchone()
    return row[0] if row else None


# In the model's field order, which Model.from_db expects.
GIFT_COLUMNS = ("id", "gift_id", "name", "price", "icon", "animation_format", "animation_url")


def _gift_active(gift_code: str) -> Gift | None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(GIFT_COLUMNS)} FROM {Gift._meta.db_table} WHERE gift_id = %s AND is_active",
            [gift_code],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    # Columns not read (is_active, sort_order) load on access, as with QuerySet.only().
    return Gift.from_db(connection.alias, GIFT_COLUMNS, row)


def _combo_next(*, room_id: int, sender_id: int, gift_id: int, now: datetime.datetime) -> int:
    """1, or one more than the sender's previous gift in this room if it was the same gift within 10 s."""
    since = connection.ops.adapt_datetimefield_value(now - COMBO_WINDOW)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT gift_id, combo, created_at >= %s FROM {GiftEvent._meta.db_table} "
            "WHERE room_id = %s AND sender_id = %s ORDER BY seq DESC LIMIT 1",
            [since, room_id, sender_id],
        )
        row = cursor.fetchone()
    if row and row[0] == gift_id and row[2]:
        return row[1] + 1
    return 1


def _row_insert(instance: GiftEvent | GiftReceipt) -> None:
    """INSERT one new row from its model instance (every column set), and give it its id."""
    fields = [field for field in instance._meta.concrete_fields if not field.primary_key]
    values = [field.get_db_prep_save(getattr(instance, field.attname), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {instance._meta.db_table} ({', '.join(field.column for field in fields)}) "
            f"VALUES ({', '.join(['%s'] * len(fields))}) RETURNING id",
            values,
        )
        instance.pk = cursor.fetchone()[0]
    instance._state.adding, instance._state.db = False, connection.alias


def _refusal(request: GiftRequest, result: Result, message: str) -> GiftOutcome:
    """A result that does not settle the MsgId: queued for staff, not stored as its answer."""
    _failed_delivery_create(request, result, message)
    return GiftOutcome(result, message, request.msg_id)


def _failed_delivery_create(request: GiftRequest, result: Result, message: str) -> FailedDelivery:
    return FailedDelivery.objects.create(
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


@transaction.atomic
def room_go_live(*, room: Room) -> Room:
    """Start a new broadcast; the `live` leaderboard starts from zero."""
    room = Room.objects.select_for_update().get(pk=room.pk)
    if room.is_live:
        return room
    session = LiveSession.objects.create(room=room)
    Room.objects.filter(pk=room.pk).update(is_live=True, current_session=session)
    room.is_live, room.current_session = True, session
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
    """Send a batch gift by gift, each all-or-nothing on its own; one outcome per gift, in order.

    A batch is never one transaction: a gift that fails (even unexpectedly) must neither undo
    nor block the others, and each gift's durable transaction commits before the next starts.
    """
    outcomes = []
    for gift in gifts:
        try:
            sender = profile_get_or_create(
                user_id=gift.user_id, nickname=gift.nickname, avatar=gift.avatar, sex=gift.sex
            )
        except Exception:
            logger.exception("server API %s: could not find or create user %s", request_id, gift.user_id)
            outcomes.append(_server_gift_unsendable(app, request_id, room, game_session, gift))
            continue
        outcomes.append(
            gift_send(
                GiftRequest(
                    scope=f"app:{app.app_id}",
                    msg_id=gift.msg_id,
                    sender=sender,
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
            )
        )
    return outcomes


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
    full_reference = f"app:{app.app_id}:{reference}"
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
    """
    if failed.room_id is None:
        raise ResendRefused("this failed delivery names no room")
    sender = failed.sender or Profile.objects.filter(user_id=failed.user_code).first()
    if sender is None:
        raise ResendRefused(f"user {failed.user_code} does not exist")
    room = room_for_gifts(failed.room.room_id)
    if failed.mini_game_code:
        game_session: GameSession | None = game_for_gifts(room, failed.mini_game_code)
    else:
        session = room_game_session(room)
        game_session = session if session and session.state == GameSession.State.STARTED else None

    # Claim the row with a compare-and-set on the MsgId it was last re-sent with, so two staff
    # clicks at once send one gift; a row already re-sent successfully is never sent again.
    msg_id = f"resend-{failed.pk}-{uuid.uuid4().hex[:12]}"
    claimed = (
        FailedDelivery.objects.filter(pk=failed.pk, resent_msg_id=failed.resent_msg_id)
        .exclude(resend_result=Result.SUCCESS)
        .update(resent_msg_id=msg_id, resend_result=None)
    )
    if not claimed:
        raise ResendRefused("this failed delivery was already re-sent")

    app = failed.app
    outcome = gift_send(
        GiftRequest(
            scope=f"app:{app.app_id}" if app else f"user:{sender.pk}",
            msg_id=msg_id,
            sender=sender,
            room=room,
            game_session=game_session,
            gift_code=failed.gift_code,
            value=failed.value,
            num=failed.num,
            receiver_code=failed.receiver_code or None,
            source=FailedDelivery.Source.STAFF,
            request_id=f"staff-{uuid.uuid4().hex[:12]}",
            app=app,
            raw_item={"resend_of": failed.pk, "original": failed.raw_item},
        )
    )
    changes: dict[str, Any] = {"resend_result": outcome.result}
    if outcome.ok:
        changes |= {"resolved_at": timezone.now(), "resolved_by": staff_user}
    FailedDelivery.objects.filter(pk=failed.pk, resent_msg_id=msg_id).update(**changes)
    for name, value in changes.items():
        setattr(failed, name, value)
    failed.resent_msg_id = msg_id
    return outcome
