"""Staff views of the catalog, rooms, games and gift records."""

from django.contrib import admin, messages
from django.utils.html import format_html

from gifts.models import (
    FailedDelivery,
    GameSession,
    Gift,
    GiftEvent,
    GiftReceipt,
    HostGiftCount,
    MiniGame,
    Room,
    ServerApp,
    ValueTier,
)
from gifts.services import game_session_end, game_session_open, game_session_start, room_go_live, room_go_off_air
from wallets.admin import ReadOnlyAdmin


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
    list_display = ["mini_game_id", "name"]
    search_fields = ["mini_game_id", "name"]
    inlines = [MiniGameTierInline]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["room_id", "title", "host", "is_live", "last_seq"]
    list_filter = ["is_live"]
    search_fields = ["room_id", "title", "host__user_id"]
    autocomplete_fields = ["host"]
    readonly_fields = ["is_live", "current_session", "last_seq", "created_at"]
    actions = ["go_live", "go_off_air"]

    @admin.action(description="Go live (starts a new live session)")
    def go_live(self, request, queryset):
        for room in queryset:
            room_go_live(room=room)
        self.message_user(request, f"{queryset.count()} room(s) live.", messages.SUCCESS)

    @admin.action(description="Go off air")
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

    @admin.action(description="Start the selected game sessions")
    def start(self, request, queryset):
        self._apply(request, queryset, game_session_start, "started")

    @admin.action(description="End the selected game sessions")
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


@admin.register(GiftEvent)
class GiftEventAdmin(ReadOnlyAdmin):
    list_display = ["room", "seq", "sender", "receiver", "gift", "value", "num", "coins", "combo", "created_at"]
    list_filter = ["gift", "created_at"]
    search_fields = ["room__room_id", "msg_id", "sender__user_id"]
    list_select_related = ["room", "sender", "receiver", "gift"]


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


@admin.register(ServerApp)
class ServerAppAdmin(admin.ModelAdmin):
    list_display = ["app_id", "name", "masked_secret", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["app_id", "name"]

    @admin.display(description="secret")
    def masked_secret(self, app):
        return f"{app.secret[:2]}{'*' * 8}" if app.secret else "-"

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["app_id", "name", "secret", "is_active"]
        return ["app_id", "name", "masked_secret", "is_active", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["app_id", "masked_secret", "created_at"]


@admin.register(FailedDelivery)
class FailedDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "code", "msg_id", "user_code", "room", "mini_game_code", "gift_code", "resolved_at"]
    list_filter = ["code", "source", "room", "mini_game_code", "created_at"]
    search_fields = ["msg_id", "user_code"]
