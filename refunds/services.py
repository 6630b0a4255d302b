"""Refunding a gift: the money back, the boards and the gift wall down, the room told, the game spared.

Lock order, the same as the gift writer's (gifts.writer) with one lock in front:

0. the refunded gift's event row, which no gift ever locks: two refunds of one gift queue
   here, and the second finds the first's result;
1. the sender's coins and the receiver's earnings, in primary-key order;
2. the room row (its next seq);
3. the leaderboard and gift-wall rows;
4. the room's goal, then its side in a running PK battle;
5. the gift's game delivery (the relay locks deliveries only, never the rows above).
"""

import dataclasses
import logging
from typing import Any

from django.db import transaction
from django.db.models import F, Q

from engagement.services import goal_take_back, pk_take_back
from gifting_site.errors import SendNotFound
from gifting_site.logs import fields
from gifts import broadcast, writer
from gifts.models import GiftEvent, GiftReceipt, HostGiftCount, ServerApp
from gifts.selectors import event_payload
from rankings.models import RankingEntry
from rankings.services import period_keys
from refunds.models import Refund
from relay.services import delivery_cancel
from wallets.models import Account, Entry, Profile, Transfer
from wallets.services import platform_account, transfer_create

logger = logging.getLogger(__name__)


class GiftToRefundNotFound(SendNotFound):
    default_message = "gift to refund not found"


@dataclasses.dataclass(frozen=True)
class RefundOutcome:
    refund: Refund
    # False when the gift had been refunded before: this is that refund, and nothing moved now.
    created: bool


@transaction.atomic(durable=True)
def gift_refund(
    *,
    event: GiftEvent,
    reason: str = "",
    source: str = Refund.Source.STAFF,
    staff_user: Any = None,
    app: ServerApp | None = None,
) -> RefundOutcome:
    """Give a paid gift's full cost back to its sender, once.

    The receiver's earnings give back their share and `platform:revenue` the rest; where the
    earnings no longer hold the share (paid out since), `platform:revenue` covers the
    shortfall and the transfer's memo says so. The leaderboards of every period that counted
    the gift, the receiver's gift wall, and the goal and running PK battle that counted it go
    down; a `reversal` event takes the room's next seq and is broadcast after commit, and a
    delivery still owed to the game is cancelled.
    """
    # The event row only (`of`): locking the joined room, people and gift too would block the
    # key-share locks every gift's INSERT takes on them while this waits for their accounts.
    gift = (
        GiftEvent.objects.select_for_update(no_key=True, of=("self",))
        .select_related("room", "sender", "receiver", "gift")
        .get(pk=event.pk)
    )
    if gift.kind != GiftEvent.Kind.GIFT:
        raise GiftToRefundNotFound("a reversal cannot be refunded")
    if (done := Refund.objects.filter(gift_event=gift).select_related("reversal").first()) is not None:
        return RefundOutcome(done, created=False)

    coins_leg, earnings_leg = _gift_legs(gift)
    locked = dict(
        Account.objects.select_for_update()
        .filter(pk__in=[leg.account_id for leg in (coins_leg, earnings_leg) if leg])
        .order_by("pk")
        .values_list("pk", "balance")
    )
    share = earnings_leg.amount if earnings_leg else 0
    host_coins = min(share, locked[earnings_leg.account_id]) if earnings_leg else 0
    shortfall = share - host_coins
    platform_coins = gift.coins - host_coins
    memo = f"refund of gift {gift.room.room_id} #{gift.seq}"
    if shortfall:
        memo += f"; host shortfall {shortfall} covered by platform:revenue"
    if reason:
        memo += f": {reason}"
    legs = [(coins_leg.account, gift.coins)]
    if host_coins:
        legs.append((earnings_leg.account, -host_coins))
    if platform_coins:
        legs.append((platform_account(Account.Kind.REVENUE), -platform_coins))
    transfer = transfer_create(
        kind=Transfer.Kind.REFUND,
        reference=f"refund:{gift.pk}",
        legs=legs,
        memo=memo[:200],
        created_by=staff_user,
    )

    advance = writer.rooms_advance({gift.room_id: 1})[gift.room_id]
    seq = advance.first_seq
    reversal = GiftEvent.objects.create(
        room=gift.room,
        seq=seq,
        kind=GiftEvent.Kind.REVERSAL,
        reverses=gift,
        msg_id=gift.msg_id,
        sender=gift.sender,
        receiver=gift.receiver,
        gift=gift.gift,
        value=gift.value,
        num=gift.num,
        count=gift.count,
        coins=gift.coins,
        combo=0,
        transfer=transfer,
    )
    _boards_take_back(gift)
    HostGiftCount.objects.filter(host=gift.receiver, gift=gift.gift).update(count=F("count") - gift.count)
    goal = goal_take_back(gift)
    battle_id = pk_take_back(gift, advance.pk_side_id)
    delivery_cancel(event_id=gift.pk, staff_user=staff_user)

    refund = Refund.objects.create(
        gift_event=gift,
        reversal=reversal,
        coins=gift.coins,
        host_coins=host_coins,
        shortfall=shortfall,
        coins_balance=coins_leg.account.balance,
        reason=reason[:200],
        source=source,
        app=app,
        requested_by=staff_user,
    )
    payload = event_payload(reversal)
    # robust: the refund is committed; a viewer who missed the broadcast reads it back with `since`.
    transaction.on_commit(lambda: broadcast.gift_events_committed(gift.room.room_id, [payload], goal=goal), robust=True)
    if battle_id is not None:
        room_ids = writer.pk_battle_rooms([battle_id])[battle_id]
        transaction.on_commit(lambda: broadcast.pk_changed(battle_id, room_ids), robust=True)
    logger.info(
        "gift refunded: room %s seq %s, %s coins back to %s",
        gift.room.room_id,
        gift.seq,
        gift.coins,
        gift.sender.user_id,
        extra=fields(
            event="gift_refund",
            room=gift.room.room_id,
            seq=gift.seq,
            reversal_seq=seq,
            sender=gift.sender.user_id,
            coins=gift.coins,
            shortfall=shortfall,
            source=source,
        ),
    )
    return RefundOutcome(refund, created=True)


def server_gift_refund(*, app: ServerApp, user_id: str, msg_id: str, reason: str = "") -> RefundOutcome:
    """RefundGift: the gift this user sent under this MsgId, through this app or the viewer API.

    The app's own MsgIds are looked up first; then the user's viewer-API MsgIds, so that a
    business server's support desk can put right a gift sent from the app's own client.
    """
    sender_pk = Profile.objects.filter(user_id=user_id).values_list("pk", flat=True).first()
    scopes = [f"app:{app.app_id}", f"user:{sender_pk}"]
    paid = {
        receipt.scope: receipt.event
        for receipt in GiftReceipt.objects.filter(
            scope__in=scopes, msg_id=msg_id, sender_id=sender_pk, event__isnull=False
        ).select_related("event")
    }
    event = next((paid[scope] for scope in scopes if scope in paid), None)
    if event is None:
        raise GiftToRefundNotFound(f"MsgId {msg_id}: no gift of UserId {user_id} was paid under it")
    return gift_refund(event=event, reason=reason, source=Refund.Source.SERVER, app=app)


def _gift_legs(gift: GiftEvent) -> tuple[Entry, Entry | None]:
    """The sender's coins leg and the receiver's earnings leg (None when the share was 0) of the gift's transfer."""
    coins_leg = earnings_leg = None
    for entry in Entry.objects.filter(transfer_id=gift.transfer_id).select_related("account"):
        if entry.account.profile_id == gift.sender_id and entry.account.kind == Account.Kind.COINS:
            coins_leg = entry
        elif entry.account.profile_id == gift.receiver_id and entry.account.kind == Account.Kind.EARNINGS:
            earnings_leg = entry
    assert coins_leg is not None, f"gift event {gift.pk} has no sender leg"  # ledger_check's invariant
    return coins_leg, earnings_leg


def _boards_take_back(gift: GiftEvent) -> None:
    """Take the gift's coins off its sender's row of every board that counted it.

    A row that falls to 0 stays, and the leaderboards skip it. Every board a room has is
    written under its room row's lock, held here since `rooms_advance`, so this cannot
    deadlock with a gift batch.
    """
    keys = period_keys(live_session_id=gift.live_session_id, at=gift.created_at)
    boards = Q()
    for period, key in keys.items():
        boards |= Q(period=period, period_key=key)
    RankingEntry.objects.filter(boards, room_id=gift.room_id, profile_id=gift.sender_id).update(
        coins=F("coins") - gift.coins
    )
