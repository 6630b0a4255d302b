"""Leaderboards grow inside the gift transaction."""

import datetime

from django.db import connection

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


def ranking_add(
    *, room_id: int, live_session_id: int | None, profile_id: int, coins: int, at: datetime.datetime
) -> None:
    """Add `coins` to the sender's total on every board of the room, in one statement.

    Runs inside the gift transaction, after the room row is locked, so two gifts to the
    same room never race on these rows. An upsert with `coins = coins + excluded.coins`
    adds in the database instead of reading and writing back.
    """
    keys = period_keys(live_session_id=live_session_id, at=at)
    table = RankingEntry._meta.db_table
    reached_at = connection.ops.adapt_datetimefield_value(at)
    rows = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(keys))
    params: list[object] = []
    for period, key in keys.items():
        params += [room_id, str(period), key, profile_id, coins, reached_at]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (room_id, period, period_key, profile_id, coins, reached_at) VALUES {rows} "
            "ON CONFLICT (room_id, period, period_key, profile_id) "
            f"DO UPDATE SET coins = {table}.coins + excluded.coins, reached_at = excluded.reached_at",
            params,
        )
