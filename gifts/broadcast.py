"""After a commit, tell the room's viewers. Placeholder: sends each event straight to the group."""

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def room_group(room_id: str) -> str:
    return f"room.{room_id}"


def gift_event_committed(room_id: str, payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    async_to_sync(layer.group_send)(room_group(room_id), {"type": "room.gifts", "events": [payload]})


def game_state_changed(room_id: str, payload: dict[str, Any] | None) -> None:
    layer = get_channel_layer()
    async_to_sync(layer.group_send)(room_group(room_id), {"type": "room.game", "game": payload})
