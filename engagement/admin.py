from django import forms
from django.contrib import admin

from engagement.models import Goal
from engagement.services import room_goal_set
from gifts.models import Gift


class GoalForm(forms.ModelForm):
    class Meta:
        model = Goal
        fields = ["room", "title", "target", "gift"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "gift" in self.fields:
            self.fields["gift"].queryset = Gift.objects.filter(is_active=True)

    def clean_room(self):
        room = self.cleaned_data["room"]
        if not room.is_live:
            raise forms.ValidationError("The room is not live: a goal is set for a live session.")
        return room


@admin.register(Goal)
class GoalAdmin(admin.ModelAdmin):
    """Goals of live sessions. Staff set one for a live room; progress is kept by the gifts themselves."""

    form = GoalForm
    list_display = ["room", "live_session", "title", "target", "gift", "progress", "reached_at", "updated_at"]
    list_filter = [("reached_at", admin.EmptyFieldListFilter)]
    search_fields = ["room__room_id", "title"]
    autocomplete_fields = ["room"]
    list_select_related = ["room", "live_session", "gift"]
    readonly_fields = ["live_session", "from_seq", "progress", "reached_at", "version", "set_by", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is None else ["room", *self.readonly_fields]  # a goal keeps its room

    def has_change_permission(self, request, obj=None):
        # The goal of an ended session is history: staff may look, not change it.
        if obj is not None and (obj.room.goal_id != obj.pk or not obj.room.is_live):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        goal = room_goal_set(
            room=obj.room,
            by=None,
            title=obj.title,
            target=obj.target,
            gift_id=obj.gift.gift_id if obj.gift else None,
        )
        obj.pk, obj.live_session_id, obj.version = goal.pk, goal.live_session_id, goal.version
