"""What a room competes for: its host's goal for the live session, and PK battles with other rooms."""

from django.conf import settings
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


class PkBattle(models.Model):
    """2-9 live rooms competing for `duration_s` by the coins their hosts receive (SPEC section 11).

    Started at once by a business server (StartPK) or staff; a host's invite runs once every
    other room's host accepted. While it runs, each room's row names its side (Room.pk_side),
    and the gift writer adds every gift of the room to that side's score in the gift's own
    transaction. It ends with a `pk_end` event in each room, numbered under the room's lock
    like a gift: a gift counts exactly when it precedes its room's `pk_end`.
    """

    class State(models.TextChoices):
        PENDING = "pending", "pending (waiting for hosts to accept)"
        RUNNING = "running", "running"
        ENDED = "ended", "ended"
        DECLINED = "declined", "declined"

    class Source(models.TextChoices):
        SERVER = "server", "server API (StartPK)"
        STAFF = "staff", "staff (admin)"
        HOST = "host", "a host's invite"

    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    duration_s = models.PositiveIntegerField()
    source = models.CharField(max_length=10, choices=Source.choices)
    app = models.ForeignKey("gifts.ServerApp", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    invited_by = models.ForeignKey("wallets.Profile", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True, help_text="when its pk_end events were written")
    winner = models.ForeignKey(
        "gifts.Room", null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="empty on a tie"
    )

    class Meta:
        verbose_name = "PK battle"
        constraints = [
            models.CheckConstraint(
                condition=Q(duration_s__gte=10, duration_s__lte=3600), name="pk_duration_10_to_3600_s"
            ),
            models.CheckConstraint(
                condition=Q(state__in=["pending", "declined"]) | Q(starts_at__isnull=False, ends_at__isnull=False),
                name="pk_started_has_its_times",
            ),
        ]
        # The clock's question, every half second in every process: which running battles are due?
        indexes = [models.Index(fields=["state", "ends_at"], name="pk_due")]

    def __str__(self) -> str:
        return f"PK #{self.pk} ({self.state})"


class PkSide(models.Model):
    """One room in a PK battle: its host at the start, its score, and the seqs that bound it.

    The room's gifts numbered after `start_seq` and before `end_seq` (its `pk_end` event)
    count; `score` is kept by the gift writer and taken back by refunds while the battle
    runs. Its supporters are the room's `pk` leaderboard keyed by this side's id.
    """

    battle = models.ForeignKey(PkBattle, on_delete=models.CASCADE, related_name="sides")
    room = models.ForeignKey("gifts.Room", on_delete=models.PROTECT, related_name="pk_sides")
    host = models.ForeignKey("wallets.Profile", on_delete=models.PROTECT, related_name="+")
    accepted_at = models.DateTimeField(null=True, blank=True)
    start_seq = models.BigIntegerField(null=True, blank=True, help_text="the room's gifts after this seq count")
    end_seq = models.BigIntegerField(null=True, blank=True, help_text="the seq of the room's pk_end event")
    score = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "PK side"
        ordering = ["battle", "pk"]
        constraints = [models.UniqueConstraint(fields=["battle", "room"], name="pk_side_once_per_room")]

    def __str__(self) -> str:
        return f"{self.battle}: {self.room}"
