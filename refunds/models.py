"""Refunded gifts: what went back to whom, why, and at whose request."""

from django.conf import settings
from django.db import models


class Refund(models.Model):
    """A gift given back to its sender, once. Its money moved in `reversal.transfer`.

    The sender got `coins` (the gift's full cost) back; the receiver's earnings gave back
    `host_coins`; `platform:revenue` gave back the rest, including `shortfall`: the part of
    the host's share their earnings no longer held (paid out since).
    """

    class Source(models.TextChoices):
        STAFF = "staff", "staff (admin)"
        SERVER = "server", "server API (RefundGift)"

    # One refund per gift: the unique key is what makes a second refund return this one.
    gift_event = models.OneToOneField("gifts.GiftEvent", on_delete=models.PROTECT, related_name="refund")
    # The room event that announced it, with the room's next seq; it names the refund's transfer.
    reversal = models.OneToOneField("gifts.GiftEvent", on_delete=models.PROTECT, related_name="+")
    coins = models.PositiveBigIntegerField(help_text="given back to the sender")
    host_coins = models.PositiveBigIntegerField(help_text="taken back from the receiver's earnings")
    shortfall = models.PositiveBigIntegerField(
        default=0, help_text="the host's share their earnings no longer held, covered by platform:revenue"
    )
    # The sender's coins right after the refund: what a repeated RefundGift answers as Balance.
    coins_balance = models.BigIntegerField()
    reason = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices)
    app = models.ForeignKey("gifts.ServerApp", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"refund of {self.gift_event.msg_id} ({self.coins} coins)"
