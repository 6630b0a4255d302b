"""Per-room leaderboards by coins spent."""

from django.db import models

from wallets.models import Profile


class RankingEntry(models.Model):
    """One sender's total in one room for one period.

    `period_key` names the period: the live session's id for `live`, the UTC date for `day`,
    the Monday of the ISO week for `week`, `all` for all time, and the room's side's id for
    `pk` (its supporters in a PK battle, engagement.models.PkSide). `reached_at` is when the
    sender reached their current total, so ties go to whoever got there first.
    """

    class Period(models.TextChoices):
        LIVE = "live", "current live session"
        DAY = "day", "today (UTC)"
        WEEK = "week", "this week (UTC, from Monday)"
        ALL = "all", "all time"
        PK = "pk", "a PK battle"

    # Indexed by the one-row-per-sender constraint and `ranking_top`, which lead with it.
    room = models.ForeignKey("gifts.Room", on_delete=models.CASCADE, related_name="ranking_entries", db_index=False)
    period = models.CharField(max_length=4, choices=Period.choices)
    period_key = models.CharField(max_length=20)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="ranking_entries")
    coins = models.BigIntegerField(default=0)
    reached_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "ranking entries"
        constraints = [
            models.UniqueConstraint(
                fields=["room", "period", "period_key", "profile"], name="ranking_one_row_per_sender"
            )
        ]
        # Serves `ORDER BY coins DESC, reached_at LIMIT n` for one board straight from the index.
        indexes = [models.Index(fields=["room", "period", "period_key", "-coins", "reached_at"], name="ranking_top")]

    def __str__(self) -> str:
        return f"{self.room} {self.period} {self.period_key}: {self.profile} {self.coins}"


# The periods of the room leaderboards viewers ask for (a PK's supporters come with the PK).
BOARD_PERIODS = [(value, label) for value, label in RankingEntry.Period.choices if value != RankingEntry.Period.PK]
