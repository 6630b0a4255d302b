"""Staff views of game deliveries and of the relay's health."""

import json

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html

from relay.models import GameDelivery, GameReport, RelayHealth, RelayRoom
from relay.services import RedeliverRefused, delivery_redeliver, relay_health, relay_resume
from wallets.admin import ReadOnlyAdmin, truncated


@admin.register(GameDelivery)
class GameDeliveryAdmin(ReadOnlyAdmin):
    """Every paid gift of a relayed game, and what the vendor made of it. Changed only by "deliver again"."""

    list_display = [
        "created_at",
        "room",
        "seq",
        "mini_game",
        "status",
        "attempts",
        "code",
        "short_message",
        "vendor_msg_id",
        "request_id",
        "delivered_at",
    ]
    list_filter = ["status", "mini_game", "code", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["vendor_msg_id", "event__msg_id", "request_id", "item__UserInfo__UserId"]
    list_select_related = ["room", "mini_game"]
    date_hierarchy = "created_at"
    fields = [
        "created_at",
        "room",
        "seq",
        "mini_game",
        "event",
        "status",
        "vendor_msg_id",
        "attempts",
        "last_attempt_at",
        "code",
        "message",
        "request_id",
        "delivered_at",
        "failure",
        "item_pretty",
    ]
    readonly_fields = fields
    actions = ["deliver_again"]

    @admin.display(description="message")
    def short_message(self, delivery):
        return truncated(delivery.message)

    @admin.display(description="GiftList item")
    def item_pretty(self, delivery):
        return format_html("<pre>{}</pre>", json.dumps(delivery.item, indent=2, ensure_ascii=False))

    def has_redeliver_permission(self, request):
        return request.user.has_perm("gifts.change_faileddelivery")

    @admin.action(description="Deliver again (failed only; new vendor MsgId, no new charge)", permissions=["redeliver"])
    def deliver_again(self, request, queryset):
        queued = 0
        for delivery in queryset.filter(status=GameDelivery.Status.FAILED):
            try:
                delivery_redeliver(delivery=delivery, staff_user=request.user)
                queued += 1
            except RedeliverRefused as refusal:
                self.message_user(request, str(refusal), messages.ERROR)
        self.message_user(request, f"{queued} deliveries queued for the game again.", messages.SUCCESS)


@admin.register(RelayHealth)
class RelayHealthAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "state", "last_success_at", "last_error_at", "last_error", "pending", "failed"]
    fields = list_display[1:] + ["paused_until", "pause_code", "pause_message"]
    readonly_fields = fields
    actions = ["resume"]

    def get_queryset(self, request):
        relay_health()  # the one row exists before any relay has run, so staff always see it
        return super().get_queryset(request)

    @admin.display(description="state")
    def state(self, health):
        if health.paused_until and health.paused_until > timezone.now():
            return f"paused until {health.paused_until:%H:%M:%S} ({health.pause_code}: {health.pause_message})"
        return "running"

    @admin.display(description="pending deliveries")
    def pending(self, health):
        return GameDelivery.objects.filter(status=GameDelivery.Status.PENDING).count()

    @admin.display(description="failed deliveries")
    def failed(self, health):
        return GameDelivery.objects.filter(status=GameDelivery.Status.FAILED).count()

    def has_resume_permission(self, request):
        return request.user.has_perm("gifts.change_faileddelivery")

    @admin.action(description="Resume now (after fixing credentials or clock)", permissions=["resume"])
    def resume(self, request, queryset):
        relay_resume()
        self.message_user(request, "The relays call the vendor again from now.", messages.SUCCESS)


@admin.register(RelayRoom)
class RelayRoomAdmin(ReadOnlyAdmin):
    list_display = ["room", "next_call_at", "lease_owner", "lease_until", "failures"]
    list_select_related = ["room"]


@admin.register(GameReport)
class GameReportAdmin(ReadOnlyAdmin):
    """The vendor's game reports, as received: which session each started or ended, and its settlement."""

    list_display = ["received_at", "report_id", "report_type", "room", "mini_game", "round_id", "session"]
    list_filter = ["report_type", "mini_game"]
    search_fields = ["report_id", "round_id", "room__room_id"]
    list_select_related = ["room", "mini_game", "session"]
    fields = ["received_at", "report_id", "report_type", "room", "mini_game", "round_id", "session", "data_pretty"]
    readonly_fields = fields

    @admin.display(description="Data")
    def data_pretty(self, report):
        return format_html("<pre>{}</pre>", json.dumps(report.data, indent=2, ensure_ascii=False))
