"""Which leaderboards a gift counts towards; gifts.writer grows them inside the gift transaction."""

import datetime

from rankings.models import RankingEntry


def period_keys(*, live_session_id: int | None, at: datetime.datetime) -> dict[str, str]:
    """The board of each period that a gift made at `at` counts towards."""
    day = at.astimezone(datetime.UTC).date()
    keys = {
        RankingEntry.Period.DAY: day.isoformat(),
        RankingEntry.Period.WEEK: (day - datetime.timedelta(days=day.weekday())).isoformat(),
        RankingEntry.Period.ALL: "all",
    }
    if live_session_id is not None:
        keys[RankingEntry.Period.LIVE] = str(live_session_id)
    return keys
