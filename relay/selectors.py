"""How a gift's game delivery is reported: to its sender (REST) and to the business server that sent it."""

from collections.abc import Iterable
from typing import Any

from relay.models import GameDelivery

# A gift of a game that is not relayed, or one that was refused before it was paid.
NOT_RELAYED = "not_relayed"


def deliveries_of(event_ids: Iterable[int]) -> dict[int, GameDelivery]:
    """{event id: its game delivery} for those of these gifts that have one."""
    return {delivery.event_id: delivery for delivery in GameDelivery.objects.filter(event_id__in=list(event_ids))}


def delivery_payload(delivery: GameDelivery | None) -> dict[str, Any]:
    if delivery is None:
        return {
            "status": NOT_RELAYED,
            "attempts": 0,
            "code": None,
            "message": "",
            "vendor_msg_id": None,
            "delivered_at": None,
        }
    return {
        "status": delivery.status,
        "attempts": delivery.attempts,
        "code": delivery.code,
        "message": delivery.message,
        "vendor_msg_id": delivery.vendor_msg_id,
        "delivered_at": delivery.delivered_at.isoformat().replace("+00:00", "Z") if delivery.delivered_at else None,
    }
