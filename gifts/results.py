"""Per-gift outcomes (SPEC section 3): results, not exceptions, because a batch reports one per gift."""

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gifts.models import GiftEvent


class Result(IntEnum):
    SUCCESS = 0
    DELIVERY_FAILED = 10003
    GIFT_NOT_CONFIGURED = 10004
    DELIVERY_EXCEPTION = 10005
    IN_FLIGHT = 10006
    INSUFFICIENT_BALANCE = 10007
    MSG_ID_REUSED = 10008
    SPENDING_LIMIT = 10009
    ON_HOLD = 10011

    @property
    def is_final(self) -> bool:
        """A final result is stored against the MsgId and answered again on every retry.

        10005 means the gift was never applied, 10006 and 10008 speak of another attempt:
        none of them settles the MsgId, so a later retry may still go through.
        """
        return self not in (Result.DELIVERY_EXCEPTION, Result.IN_FLIGHT, Result.MSG_ID_REUSED)


# How the viewer REST API reports each result (SPEC section 4).
HTTP_STATUS = {
    Result.SUCCESS: 201,
    Result.DELIVERY_FAILED: 422,
    Result.GIFT_NOT_CONFIGURED: 404,
    # Nothing was applied, or the outcome is stored under the MsgId: a retry is always safe.
    Result.DELIVERY_EXCEPTION: 503,
    Result.IN_FLIGHT: 409,
    Result.INSUFFICIENT_BALANCE: 422,
    Result.MSG_ID_REUSED: 409,
    Result.SPENDING_LIMIT: 422,
    Result.ON_HOLD: 422,
}


@dataclass(frozen=True)
class GiftOutcome:
    result: Result
    message: str
    msg_id: str
    event: "GiftEvent | None" = None
    coins_balance: int | None = None
    # True when the answer is the stored result of an earlier attempt with this MsgId.
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.result is Result.SUCCESS
