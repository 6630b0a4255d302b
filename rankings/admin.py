from django.contrib import admin

from rankings.models import RankingEntry
from wallets.admin import ReadOnlyAdmin


@admin.register(RankingEntry)
class RankingEntryAdmin(ReadOnlyAdmin):
    list_display = ["room", "period", "period_key", "profile", "coins", "reached_at"]
    list_filter = ["period"]
    search_fields = ["room__room_id", "profile__user_id"]
