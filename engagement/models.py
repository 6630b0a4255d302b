"""What a room competes for: its host's goal for the live session (PK battles come next)."""

from django.db import models
from django.db.models import Q


class Goal(models.Model):
    """A target the host sets for one live session: coins, or a count of one gift.

    `progress` is kept by the gift writer (gifts.writer.goals_add) in the transaction of the
    gifts it counts, and taken back by refunds, so it is exact and costs a viewer one row
    to read. It counts the room's gifts whose seq is above `from_seq`: the room's seq when
    the goal started counting, read under the room row's lock that every gift also takes.
    """

    room = models.ForeignKey("gifts.Room", on_delete=models.CASCADE, related_name="goals")
    live_session = models.OneToOneField("gifts.LiveSession", on_delete=models.CASCADE, related_name="goal")
    title = models.CharField(max_length=100)
    target = models.PositiveBigIntegerField()
    gift = models.ForeignKey(
        "gifts.Gift",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="count this gift; empty: count coins",
    )
    from_seq = models.BigIntegerField(help_text="gifts of the room with a greater seq count")
    progress = models.BigIntegerField(default=0)
    reached_at = models.DateTimeField(null=True, blank=True, help_text="when progress first reached the target")
    # Grows with every change, in commit order (each change holds the row): viewers keep the
    # newest state whichever server process told them first.
    version = models.PositiveBigIntegerField(default=1)
    set_by = models.ForeignKey(
        "wallets.Profile", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", help_text="empty: staff"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(target__gt=0), name="goal_target_positive"),
            models.CheckConstraint(condition=Q(progress__gte=0), name="goal_progress_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.room}: {self.title}"

    @property
    def reached(self) -> bool:
        return self.reached_at is not None
