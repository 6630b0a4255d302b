"""What the gift transaction writes for the relay: the one narrow door from gifts into this app.

`gifts.services` calls `delivery_row` for each paid gift of a relayed game and writes the
rows with the rest of the batch (gifts.writer.deliveries_insert); `relay.wakeup.relays_wake`
then has the relays take them as soon as the batch commits.
"""

import json
import re
import secrets
from typing import Any

from django.conf import settings

from gifts.models import GiftEvent

# ZEGO's limits on what a GiftList item carries. Its documentation allows letters and
# digits in a UserId; `_` and `-` are let through as in its MsgIds.
NICKNAME_MAX = 32
VENDOR_USER_ID = re.compile(r"[0-9A-Za-z_-]{1,48}")
AVATAR_MAX = 1024
# ZEGO requires every UserInfo to carry an avatar, as an http or https address.
VENDOR_AVATAR = re.compile(r"https?://\S+", re.IGNORECASE)


def vendor_msg_id_new(event_id: int) -> str:
    """A MsgId for one delivery: ZEGO allows 64 of [0-9A-Za-z_-], unique per AppId.

    The random part keeps it unique when another database (a staging copy, a restored
    backup) numbers its events the same way under the same AppId.
    """
    return f"gs{event_id}-{secrets.token_hex(6)}"


def delivery_item(event: GiftEvent) -> dict[str, Any]:
    """The GiftList item for this gift, without its MsgId, as SendDanmakuGifts takes it."""
    sender = event.sender
    return {
        "UserInfo": {
            "UserId": sender.user_id,
            "Nickname": (sender.nickname or sender.user_id)[:NICKNAME_MAX],
            "Avatar": vendor_avatar(sender.avatar),
            "Sex": sender.sex,
        },
        "GiftInfo": {"GiftId": event.gift.gift_id, "Value": event.value, "Num": event.num},
        "Timestamp": int(event.created_at.timestamp() * 1000),
        "ReceiverId": event.receiver.user_id,
    }


def vendor_avatar(avatar: str) -> str:
    """The sender's avatar if the vendor can take it, else GAME_VENDOR_DEFAULT_AVATAR (which may be unset)."""
    return avatar if VENDOR_AVATAR.fullmatch(avatar) else settings.GAME_VENDOR_DEFAULT_AVATAR


def delivery_row(event: GiftEvent) -> tuple[Any, ...]:
    """A pending delivery of a saved event, in gifts.writer.DELIVERY_COLUMNS order (without the defaults)."""
    session = event.game_session
    return (
        event.pk,
        event.room_id,
        session.mini_game_id,
        event.seq,
        vendor_msg_id_new(event.pk),
        json.dumps(delivery_item(event)),
    )


def item_problem(item: dict[str, Any]) -> str:
    """Why the vendor would refuse this item whatever we do, or "" when it can be sent.

    Such a gift is failed at once instead of sent: one unsendable item must not make the
    vendor refuse, again and again, the call that carries the room's other gifts.
    """
    user = item["UserInfo"]
    if not VENDOR_USER_ID.fullmatch(user["UserId"]):
        return f"UserId {user['UserId']!r} is not one the game vendor accepts (letters and digits, at most 48)"
    if not VENDOR_AVATAR.fullmatch(user["Avatar"]):
        return (
            "the sender has no avatar the game vendor accepts (an http or https URL); set "
            "GAME_VENDOR_DEFAULT_AVATAR for people without one, then deliver the gift again"
        )
    if len(user["Avatar"].encode()) > AVATAR_MAX:
        return f"Avatar is longer than the game vendor's {AVATAR_MAX} bytes"
    return ""
