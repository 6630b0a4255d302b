"""Leaderboard reads."""

from django.utils import timezone

from rankings.models import RankingEntry
from rankings.services import period_keys

# The top fans a room shows while live: in the snapshot, the leaderboard messages, the room page.
LIVE_TOP_SIZE = 10


def live_top(room) -> list[dict]:
    return leaderboard_top(room=room, period=RankingEntry.Period.LIVE, limit=LIVE_TOP_SIZE)


def leaderboard_top(*, room, period: str, limit: int = 10, key: str | None = None) -> list[dict]:
    """The room's top senders for a period (now, or the one `key` names), ties to whoever
    reached the total first.

    The `ranking_top` index serves both the filter and the ORDER BY, so this reads `limit`
    rows however many people have sent gifts.
    """
    if key is None:
        key = period_keys(live_session_id=room.current_session_id, at=timezone.now()).get(period)
    if key is None:
        return []  # `live` while the room is off air: nothing to rank.
    rows = (
        # A sender whose gifts were all refunded keeps a row at 0 coins: not on the board.
        RankingEntry.objects.filter(room=room, period=period, period_key=key, coins__gt=0)
        .order_by("-coins", "reached_at", "id")
        .select_related("profile")[:limit]
    )
    return [
        {
            "rank": rank,
            "user_id": row.profile.user_id,
            "nickname": row.profile.display_name,
            "avatar": row.profile.avatar,
            "coins": row.coins,
        }
        for rank, row in enumerate(rows, start=1)
    ]
