"""The outbox of paid gifts for the game vendor, and the relay's own state.

A `GameDelivery` is written in the same transaction as the gift it carries (see
gifts.writer.deliveries_insert), so a gift that did not commit is never sent and one that
did is never forgotten. The relay (relay.services, run by `manage.py relay_game_gifts`)
marks a row delivered or failed only after the vendor answered.
"""

from django.db import models
from django.db.models import Q


class GameDelivery(models.Model):
    """One paid gift on its way to the game, sent under its own vendor MsgId."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    event = models.OneToOneField("gifts.GiftEvent", on_delete=models.PROTECT, related_name="game_delivery")
    # Indexed by the pending (room, seq) index and the (room, seq) constraint, which lead with it.
    room = models.ForeignKey("gifts.Room", on_delete=models.PROTECT, related_name="+", db_index=False)
    mini_game = models.ForeignKey("gifts.MiniGame", on_delete=models.PROTECT, related_name="+")
    # The event's seq: a room's gifts reach the game in this order.
    seq = models.BigIntegerField()
    # ZEGO: at most 64 of [0-9A-Za-z_-], unique per AppId. A retry repeats it; "deliver again" replaces it.
    vendor_msg_id = models.CharField("vendor MsgId", max_length=64, unique=True)
    # The GiftList item without its MsgId, fixed when the gift was paid: a retried MsgId
    # always carries the same content, whatever the sender renames themselves to meanwhile.
    item = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="calls to the vendor that carried this gift")
    code = models.BigIntegerField("vendor code", null=True, blank=True, help_text="the last answer's code or Result")
    message = models.CharField(max_length=300, blank=True)
    request_id = models.CharField("vendor RequestId", max_length=64, blank=True)
    created_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failure = models.OneToOneField(
        "gifts.FailedDelivery", null=True, blank=True, on_delete=models.PROTECT, related_name="game_delivery"
    )

    class Meta:
        verbose_name_plural = "game deliveries"
        constraints = [models.UniqueConstraint(fields=["room", "seq"], name="delivery_one_per_room_seq")]
        indexes = [
            models.Index(fields=["room", "seq"], condition=Q(status="pending"), name="delivery_pending_in_room_order"),
            models.Index(fields=["status", "-created_at"], name="delivery_by_status"),
        ]

    def __str__(self) -> str:
        return f"{self.vendor_msg_id} ({self.status})"


class RelayRoom(models.Model):
    """Who serves a room's deliveries now, and when the room may be called next.

    Any number of relays share these rows: a relay claims a room by moving `lease_until`
    forward with an UPDATE that checks it has passed, so one relay at a time calls the
    vendor for a room (its gifts arrive in seq order) and `next_call_at` keeps the vendor's
    per-room rate across all of them. A relay that dies mid-call holds the room until its
    lease runs out; then another relay repeats the call with the same MsgIds.
    """

    room = models.OneToOneField("gifts.Room", on_delete=models.CASCADE, related_name="relay_state")
    next_call_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    # Calls in a row that the vendor did not take (transport errors, 5xx, retryable codes): the backoff grows with it.
    failures = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"relay of {self.room_id}"


class RelayHealth(models.Model):
    """The relays' shared view of the vendor: one row, shown to staff in the admin.

    When the vendor refuses our credentials or clock, every relay stops calling until
    `paused_until`, and the deliveries wait as pending.
    """

    ID = 1

    paused_until = models.DateTimeField(null=True, blank=True)
    pause_code = models.BigIntegerField(null=True, blank=True)
    pause_message = models.CharField(max_length=300, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = "relay health"
        verbose_name_plural = "relay health"

    def __str__(self) -> str:
        return "game relay"


class GameReport(models.Model):
    """A game report the vendor called back with (game started, settlement), kept once per ReportId."""

    class ReportType(models.IntegerChoices):
        STARTED = 1, "game started"
        SETTLEMENT = 2, "settlement"

    report_id = models.CharField(max_length=128, unique=True)
    report_type = models.PositiveSmallIntegerField(choices=ReportType.choices)
    room = models.ForeignKey("gifts.Room", on_delete=models.PROTECT, related_name="+")
    mini_game = models.ForeignKey("gifts.MiniGame", on_delete=models.PROTECT, related_name="+")
    round_id = models.CharField(max_length=128, blank=True)
    # The game session the report started or ended (the settlement is `data`).
    session = models.ForeignKey("gifts.GameSession", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    data = models.JSONField(null=True, blank=True, help_text="the report's Data, as sent")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.report_id} ({self.get_report_type_display()})"
