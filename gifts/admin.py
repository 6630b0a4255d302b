"""Staff views of the catalog, rooms, games and gift records."""

import json
import secrets

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

from gifting_site.csv_export import export_csv
from gifting_site.errors import RequestError
from gifts.models import (
    FailedDelivery,
    GameSession,
    Gift,
    GiftEvent,
    GiftReceipt,
    HostGiftCount,
    MiniGame,
    Room,
    RoomCohost,
    ServerApp,
    ValueTier,
)
from gifts.services import (
    MAX_COHOSTS,
    ResendRefused,
    cohosts_refusal,
    failed_delivery_resend,
    failed_delivery_resolve,
    game_session_end,
    game_session_open,
    game_session_start,
    room_go_live,
    room_go_off_air,
)
from refunds.services import GiftToRefundNotFound, gift_refund  # the refunds app's one door for staff
from wallets.admin import ReadOnlyAdmin, action_form_page, truncated


class RefundForm(forms.Form):
    reason = forms.CharField(max_length=200, help_text="why: kept with the refund and written in the ledger")


class RefundPermission:
    """For admin lists with a "refund" action: staff who may add refunds may use it."""

    def has_refund_permission(self, request):
        return request.user.has_perm("refunds.add_refund")


def refund_with_reason(model_admin, request, events: list[GiftEvent], action: str):
    """The "refund" action: ask staff why, then refund each gift once and say what happened."""
    form = RefundForm(request.POST if "apply" in request.POST else None)
    if not form.is_valid():
        return action_form_page(
            model_admin,
            request,
            action=action,
            form=form,
            title="Refund gifts",
            button="Refund",
            objects=[
                f"{event.room.room_id} #{event.seq}: {event.sender.user_id} sent {event.gift.gift_id} "
                f"×{event.count} ({event.coins} coins), MsgId {event.msg_id}"
                for event in events
            ],
            intro="Each gift's full cost goes back to its sender, once: the host's earnings give back their "
            "share (what they no longer hold is covered by platform:revenue) and platform:revenue the rest. "
            "The leaderboards and the gift wall go down, the room is told, and a game delivery still owed "
            "is cancelled.",
        )
    for event in events:
        try:
            outcome = gift_refund(event=event, reason=form.cleaned_data["reason"], staff_user=request.user)
        except GiftToRefundNotFound as refusal:
            model_admin.message_user(
                request, f"{event.room.room_id} #{event.seq}: not refunded: {refusal}", messages.ERROR
            )
            continue
        refund = outcome.refund
        if outcome.created:
            shortfall = f" ({refund.shortfall} of the host's share from platform revenue)" if refund.shortfall else ""
            model_admin.message_user(
                request,
                f"MsgId {event.msg_id}: {refund.coins} coins back to {event.sender.user_id}{shortfall}; "
                f"reversal #{refund.reversal.seq} in room {event.room.room_id}.",
                messages.SUCCESS,
            )
        else:
            model_admin.message_user(
                request,
                f"MsgId {event.msg_id}: already refunded on {refund.created_at:%Y-%m-%d %H:%M}.",
                messages.WARNING,
            )
    return None


class ValueTierInline(admin.TabularInline):
    model = ValueTier
    extra = 1


class GiftTierInline(ValueTierInline):
    fields = ["mini_game", "value", "effect"]


class MiniGameTierInline(ValueTierInline):
    fields = ["gift", "value", "effect"]


@admin.register(Gift)
class GiftAdmin(admin.ModelAdmin):
    list_display = ["icon_preview", "gift_id", "name", "price", "animation_format", "is_active", "sort_order"]
    list_display_links = ["gift_id"]
    list_editable = ["is_active", "sort_order"]
    list_filter = ["is_active", "animation_format"]
    search_fields = ["gift_id", "name"]
    readonly_fields = ["icon_preview"]
    inlines = [GiftTierInline]

    @admin.display(description="icon")
    def icon_preview(self, gift):
        if not gift.icon:
            return "-"
        return format_html('<img src="{}" alt="" style="height:40px;width:40px;object-fit:contain">', gift.icon)

    def has_delete_permission(self, request, obj=None):
        return False  # sent gifts refer to it; deactivate instead


@admin.register(MiniGame)
class MiniGameAdmin(admin.ModelAdmin):
    list_display = ["mini_game_id", "name", "relay"]
    list_filter = ["relay"]
    search_fields = ["mini_game_id", "name"]
    inlines = [MiniGameTierInline]


class RoomCohostFormSet(forms.BaseInlineFormSet):
    """The rules the host's API keeps for co-hosts (`cohosts_refusal`)."""

    def clean(self):
        super().clean()
        kept = [
            form.cleaned_data["profile"].user_id
            for form in self.forms
            if form.cleaned_data.get("profile") is not None and not form.cleaned_data.get("DELETE")
        ]
        if refusal := cohosts_refusal(self.instance, list(dict.fromkeys(kept))):
            raise forms.ValidationError(f"Co-hosts: {refusal}.")


class RoomCohostInline(admin.TabularInline):
    model = RoomCohost
    formset = RoomCohostFormSet
    max_num = MAX_COHOSTS
    extra = 0
    autocomplete_fields = ["profile"]
    verbose_name = "co-host"
    verbose_name_plural = "co-hosts: gifts may name them as receiver, and earn them the share"


class SavesOnlyItsForm(admin.ModelAdmin):
    """A change saves only the columns its form edits.

    `obj` was read when the request began; what services write meanwhile under their own
    locks (a room's seqs and battle side, an app's rotated secret) must not be written back.
    """

    def save_model(self, request, obj, form, change):
        if change:
            columns = {field.name for field in obj._meta.concrete_fields}
            obj.save(update_fields=[name for name in form.fields if name in columns])
        else:
            super().save_model(request, obj, form, change)


@admin.register(Room)
class RoomAdmin(SavesOnlyItsForm):
    inlines = [RoomCohostInline]
    list_display = ["room_id", "title", "host", "is_live", "last_seq"]
    list_filter = ["is_live"]
    search_fields = ["room_id", "title", "host__user_id"]
    autocomplete_fields = ["host"]
    # Written only by their services, under the room's lock: a form must never save a stale copy.
    readonly_fields = ["is_live", "current_session", "goal", "pk_side", "last_seq", "created_at"]
    actions = ["go_live", "go_off_air"]

    @admin.action(description="Go live (starts a new live session)", permissions=["change"])
    def go_live(self, request, queryset):
        for room in queryset:
            room_go_live(room=room)
        self.message_user(request, f"{queryset.count()} room(s) live.", messages.SUCCESS)

    @admin.action(description="Go off air", permissions=["change"])
    def go_off_air(self, request, queryset):
        for room in queryset:
            room_go_off_air(room=room)
        self.message_user(request, f"{queryset.count()} room(s) off air.", messages.SUCCESS)


@admin.register(GameSession)
class GameSessionAdmin(admin.ModelAdmin):
    list_display = ["id", "room", "mini_game", "state", "created_at", "started_at", "ended_at"]
    list_filter = ["state", "mini_game"]
    search_fields = ["room__room_id"]
    actions = ["start", "end"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ["state", "started_at", "ended_at"]
        return ["room", "mini_game", "state", "started_at", "ended_at"]

    def save_model(self, request, obj, form, change):
        if not change:
            try:
                created = game_session_open(room=obj.room, mini_game=obj.mini_game)
            except ValueError as error:
                self.message_user(request, str(error), messages.ERROR)
                return
            obj.pk = created.pk

    @admin.action(description="Start the selected game sessions", permissions=["change"])
    def start(self, request, queryset):
        self._apply(request, queryset, game_session_start, "started")

    @admin.action(description="End the selected game sessions", permissions=["change"])
    def end(self, request, queryset):
        self._apply(request, queryset, game_session_end, "ended")

    def _apply(self, request, queryset, service, verb):
        done = 0
        for session in queryset:
            try:
                service(session=session)
                done += 1
            except ValueError as error:
                self.message_user(request, str(error), messages.WARNING)
        self.message_user(request, f"{done} game session(s) {verb}.", messages.SUCCESS)


class LargeGiftFilter(admin.SimpleListFilter):
    title = "size"
    parameter_name = "large"

    def lookups(self, request, model_admin):
        return [("yes", f"large (at least {settings.LARGE_GIFT_COINS:,} coins)")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(kind=GiftEvent.Kind.GIFT, coins__gte=settings.LARGE_GIFT_COINS)
        return queryset


@admin.register(GiftEvent)
class GiftEventAdmin(RefundPermission, ReadOnlyAdmin):
    list_display = ["room", "seq", "kind", "sender", "receiver", "gift", "value", "num", "coins", "combo", "created_at"]
    list_filter = ["kind", LargeGiftFilter, "gift", "created_at"]
    search_fields = ["room__room_id", "msg_id", "sender__user_id"]
    list_select_related = ["room", "sender", "receiver", "gift"]
    actions = ["refund", export_csv]
    csv_related = ["room", "sender", "receiver", "gift", "reverses", "transfer"]
    csv_columns = [
        ("id", lambda event: event.pk),
        ("created_at", lambda event: event.created_at),
        ("room", lambda event: event.room.room_id),
        ("seq", lambda event: event.seq),
        ("kind", lambda event: event.kind),
        ("reverses_seq", lambda event: event.reverses.seq if event.reverses_id else None),
        ("msg_id", lambda event: event.msg_id),
        # A pk_end event has no sender, receiver, gift or transfer; it names its battle.
        ("sender", lambda event: event.sender.user_id if event.sender_id else ""),
        ("receiver", lambda event: event.receiver.user_id if event.receiver_id else ""),
        ("gift", lambda event: event.gift.gift_id if event.gift_id else ""),
        ("value", lambda event: event.value),
        ("num", lambda event: event.num),
        ("count", lambda event: event.count),
        ("coins", lambda event: event.coins),
        ("effect", lambda event: event.effect),
        ("combo", lambda event: event.combo),
        ("transfer", lambda event: event.transfer.reference if event.transfer_id else ""),
        ("pk_id", lambda event: event.pk_battle_id),
    ]

    @admin.action(description="Refund the selected gifts to their senders", permissions=["refund"])
    def refund(self, request, queryset):
        events = list(queryset.filter(kind=GiftEvent.Kind.GIFT).select_related("room", "sender", "gift").order_by("pk"))
        return refund_with_reason(self, request, events, "refund")


@admin.register(GiftReceipt)
class GiftReceiptAdmin(ReadOnlyAdmin):
    list_display = ["scope", "msg_id", "sender", "room", "gift_code", "value", "num", "result", "created_at"]
    list_filter = ["result"]
    search_fields = ["msg_id", "sender__user_id"]
    list_select_related = ["sender", "room"]


@admin.register(HostGiftCount)
class HostGiftCountAdmin(ReadOnlyAdmin):
    list_display = ["host", "gift", "count"]
    search_fields = ["host__user_id"]


class ServerAppCreateForm(forms.ModelForm):
    app_id = forms.RegexField(
        regex=r"^[A-Za-z0-9_-]{1,32}$", max_length=32, help_text="what the business server sends as AppId"
    )
    secret = forms.CharField(
        required=False,
        min_length=8,
        max_length=128,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
        help_text="leave empty to generate a strong one; it is shown once, right after saving",
    )

    class Meta:
        model = ServerApp
        fields = ["app_id", "name", "secret", "is_active"]

    def clean_secret(self) -> str:
        secret = self.cleaned_data["secret"].strip()
        self.secret_generated = not secret
        return secret or server_secret_generate()


def server_secret_generate() -> str:
    return secrets.token_hex(16)


@admin.register(ServerApp)
class ServerAppAdmin(SavesOnlyItsForm):
    """Apps allowed to call the server API. A secret is readable once, when it is made, never after."""

    list_display = ["app_id", "name", "masked_secret", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["app_id", "name"]
    actions = ["rotate_secret"]

    @admin.display(description="secret")
    def masked_secret(self, app):
        return f"{app.secret[:2]}{'*' * 8}" if app.secret else "-"

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ServerAppCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["app_id", "name", "secret", "is_active"]
        return ["app_id", "name", "masked_secret", "is_active", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["app_id", "masked_secret", "created_at"]

    def has_delete_permission(self, request, obj=None):
        return False  # failed deliveries and receipts refer to it; deactivate instead

    def response_add(self, request, obj, post_url_continue=None):
        if getattr(obj, "_secret_generated", False):
            # Rendered straight into this response, never put in messages (they can live in a cookie).
            return self._secrets_shown(request, [obj], "App created")
        return super().response_add(request, obj, post_url_continue)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        obj._secret_generated = getattr(form, "secret_generated", False)

    @admin.action(description="Generate a new secret (the old one stops working at once)", permissions=["change"])
    def rotate_secret(self, request, queryset):
        apps = list(queryset)
        for app in apps:
            app.secret = server_secret_generate()
            ServerApp.objects.filter(pk=app.pk).update(secret=app.secret)
        return self._secrets_shown(request, apps, "New secrets")

    def _secrets_shown(self, request, apps, title):
        return TemplateResponse(
            request,
            "admin/gifts/serverapp/secrets_shown.html",
            {**self.admin_site.each_context(request), "title": title, "apps": apps, "opts": self.model._meta},
        )


class ResolvedFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("open", "open"), ("resolved", "resolved")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(FailedDelivery)
class FailedDeliveryAdmin(RefundPermission, ReadOnlyAdmin):
    """The failed-delivery queue: read-only rows, acted on only through "mark resolved" and "re-send"."""

    list_display = [
        "created_at",
        "code",
        "short_message",
        "msg_id",
        "user_code",
        "room",
        "mini_game_code",
        "gift_code",
        "value",
        "num",
        "source",
        "resolved_at",
        "resend_result",
    ]
    list_filter = [
        "code",
        ResolvedFilter,
        "source",
        "room",
        "mini_game_code",
        "app",
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["msg_id", "user_code", "request_id"]
    list_select_related = ["room"]
    date_hierarchy = "created_at"
    fields = [
        "created_at",
        "source",
        "request_id",
        "app",
        "user_code",
        "room",
        "mini_game_code",
        "msg_id",
        "gift_code",
        "receiver_code",
        "value",
        "num",
        "code",
        "message",
        "raw_item_pretty",
        "resolved_at",
        "resolved_by",
        "resent_msg_id",
        "resend_result",
    ]
    readonly_fields = fields
    actions = ["mark_resolved", "resend", "deliver_again", "refund", export_csv]
    csv_related = ["room", "app", "resolved_by"]
    csv_columns = [
        ("id", lambda failed: failed.pk),
        ("created_at", lambda failed: failed.created_at),
        ("source", lambda failed: failed.source),
        ("code", lambda failed: failed.code),
        ("message", lambda failed: failed.message),
        ("msg_id", lambda failed: failed.msg_id),
        ("user_id", lambda failed: failed.user_code),
        ("room", lambda failed: failed.room.room_id if failed.room else ""),
        ("mini_game", lambda failed: failed.mini_game_code),
        ("gift", lambda failed: failed.gift_code),
        ("value", lambda failed: failed.value),
        ("num", lambda failed: failed.num),
        ("receiver", lambda failed: failed.receiver_code),
        ("request_id", lambda failed: failed.request_id),
        ("app", lambda failed: failed.app.app_id if failed.app else ""),
        ("resolved_at", lambda failed: failed.resolved_at),
        ("resolved_by", lambda failed: failed.resolved_by.get_username() if failed.resolved_by else ""),
        ("resent_msg_id", lambda failed: failed.resent_msg_id),
        ("resend_result", lambda failed: failed.resend_result),
    ]
    change_form_template = "admin/gifts/faileddelivery/change_form.html"

    @admin.display(description="message")
    def short_message(self, failed):
        return truncated(failed.message)

    @admin.display(description="raw item")
    def raw_item_pretty(self, failed):
        return format_html("<pre>{}</pre>", json.dumps(failed.raw_item, indent=2, ensure_ascii=False))

    def has_resolve_permission(self, request):
        return request.user.has_perm("gifts.change_faileddelivery")

    @admin.action(description="Mark resolved", permissions=["resolve"])
    def mark_resolved(self, request, queryset):
        done = failed_delivery_resolve(deliveries=queryset, staff_user=request.user)
        self.message_user(request, f"{done} failed deliveries marked resolved.", messages.SUCCESS)

    @admin.action(description="Re-send as a new gift (new MsgId; the sender pays)", permissions=["resolve"])
    def resend(self, request, queryset):
        for failed in queryset.select_related("room", "sender", "app"):
            self._resend_one(request, failed)

    def _resend_one(self, request, failed):
        try:
            outcome = failed_delivery_resend(failed=failed, staff_user=request.user)
        except (ResendRefused, RequestError) as refusal:
            self.message_user(request, f"MsgId {failed.msg_id}: not re-sent: {refusal}", messages.ERROR)
            return
        if outcome.ok:
            self.message_user(
                request,
                f"MsgId {failed.msg_id}: re-sent as {outcome.msg_id}, delivered "
                f"(room {failed.room.room_id} seq {outcome.event.seq}); marked resolved.",
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request,
                f"MsgId {failed.msg_id}: re-sent as {outcome.msg_id}, which failed with "
                f"{int(outcome.result)}: {outcome.message}",
                messages.WARNING,
            )

    @admin.action(description="Deliver again to the game (vendor failures; new vendor MsgId)", permissions=["resolve"])
    def deliver_again(self, request, queryset):
        for failed in queryset.filter(source=FailedDelivery.Source.VENDOR):
            self._deliver_again_one(request, failed)

    def _deliver_again_one(self, request, failed):
        # The relay app owns game deliveries; this is its one door for staff.
        from relay.services import RedeliverRefused, failed_delivery_redeliver

        try:
            delivery = failed_delivery_redeliver(failed=failed, staff_user=request.user)
        except RedeliverRefused as refusal:
            self.message_user(request, f"MsgId {failed.msg_id}: not delivered again: {refusal}", messages.ERROR)
            return
        self.message_user(
            request,
            f"MsgId {failed.msg_id}: queued for the game again as {delivery.vendor_msg_id}; marked resolved.",
            messages.SUCCESS,
        )

    @admin.action(description="Refund the paid gift to its sender (vendor failures)", permissions=["refund"])
    def refund(self, request, queryset):
        # Only a gift the game refused was paid for; a billing failure charged nothing.
        events = list(
            GiftEvent.objects.filter(game_delivery__failure__in=queryset)
            .select_related("room", "sender", "gift")
            .order_by("pk")
        )
        if not events:
            self.message_user(
                request, "Nothing to refund: only gifts the game refused were paid for.", messages.WARNING
            )
            return None
        return refund_with_reason(self, request, events, "refund")

    def get_urls(self):
        return [
            path(
                "<int:pk>/deliver-again/",
                self.admin_site.admin_view(self.deliver_again_view),
                name="gifts_faileddelivery_deliver_again",
            ),
            path(
                "<int:pk>/resolve/",
                self.admin_site.admin_view(self.resolve_view),
                name="gifts_faileddelivery_resolve",
            ),
            path("<int:pk>/resend/", self.admin_site.admin_view(self.resend_view), name="gifts_faileddelivery_resend"),
            *super().get_urls(),
        ]

    def resolve_view(self, request, pk):
        self._row_action_check(request)
        failed_delivery_resolve(deliveries=FailedDelivery.objects.filter(pk=pk), staff_user=request.user)
        self.message_user(request, "Marked resolved.", messages.SUCCESS)
        return redirect("admin:gifts_faileddelivery_change", pk)

    def resend_view(self, request, pk):
        self._row_action_check(request)
        failed = get_object_or_404(FailedDelivery.objects.select_related("room", "sender", "app"), pk=pk)
        self._resend_one(request, failed)
        return redirect("admin:gifts_faileddelivery_change", pk)

    def deliver_again_view(self, request, pk):
        self._row_action_check(request)
        self._deliver_again_one(request, get_object_or_404(FailedDelivery, pk=pk))
        return redirect("admin:gifts_faileddelivery_change", pk)

    def _row_action_check(self, request):
        if request.method != "POST":
            raise PermissionDenied("use the buttons on the failed delivery's page")
        if not self.has_resolve_permission(request):
            raise PermissionDenied

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["can_act"] = self.has_resolve_permission(request)
        return super().render_change_form(request, context, add, change, form_url, obj)
