from django.contrib import admin

from refunds.models import Refund
from wallets.admin import ReadOnlyAdmin


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    """Refunds are made from gift events and failed deliveries ("refund"), or by RefundGift; here they are read."""

    list_display = [
        "created_at",
        "gift_event",
        "sender",
        "coins",
        "host_coins",
        "shortfall",
        "source",
        "app",
        "requested_by",
        "reason",
    ]
    list_filter = ["source", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["gift_event__msg_id", "gift_event__sender__user_id", "reason"]
    list_select_related = ["gift_event__room", "gift_event__sender", "gift_event__gift", "app", "requested_by"]
    fields = [*list_display, "reversal", "coins_balance"]
    readonly_fields = fields

    @admin.display(description="sender")
    def sender(self, refund):
        return refund.gift_event.sender
