from django import forms
from django.contrib import admin

from engagement.models import Goal, PkBattle, PkSide
from engagement.services import (
    MAX_PK_ROOMS,
    MAX_PK_SECONDS,
    MIN_PK_ROOMS,
    MIN_PK_SECONDS,
    pk_battle_start,
    room_goal_set,
)
from gifting_site.errors import RequestError
from gifts.models import Gift, Room


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

    def clean(self):
        """Set the goal here, so that what the service refuses under the room's lock (the room
        gone off air, or the gift retired, since the fields were checked) shows on the form like
        any error. It writes nothing then; `save_model` only hands the goal to the admin."""
        cleaned = super().clean()
        if not self.errors:
            gift = cleaned.get("gift")
            try:
                self.goal = room_goal_set(
                    room=cleaned.get("room") or self.instance.room,  # a goal being changed keeps its room
                    by=None,
                    title=cleaned["title"],
                    target=cleaned["target"],
                    gift_id=gift.gift_id if gift else None,
                )
            except RequestError as refused:
                raise forms.ValidationError(refused.message) from None
        return cleaned


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
        goal = form.goal  # set by GoalForm.clean, under the room's lock
        obj.pk, obj.live_session_id, obj.version = goal.pk, goal.live_session_id, goal.version


class PkBattleForm(forms.ModelForm):
    """Staff start a battle between live rooms at once, as a business server's StartPK does."""

    staff_user = None  # who starts it: set per request by PkBattleAdmin.get_form

    rooms = forms.ModelMultipleChoiceField(
        queryset=Room.objects.filter(is_live=True).order_by("room_id"),
        help_text=f"{MIN_PK_ROOMS} to {MAX_PK_ROOMS} live rooms",
    )

    class Meta:
        model = PkBattle
        fields = ["rooms", "duration_s"]
        help_texts = {"duration_s": f"seconds, {MIN_PK_SECONDS} to {MAX_PK_SECONDS}"}

    def clean_rooms(self):
        rooms = self.cleaned_data["rooms"]
        if not MIN_PK_ROOMS <= len(rooms) <= MAX_PK_ROOMS:
            raise forms.ValidationError(f"Choose {MIN_PK_ROOMS} to {MAX_PK_ROOMS} rooms.")
        if busy := [room.room_id for room in rooms if room.pk_side_id is not None]:
            raise forms.ValidationError(f"Already in a running PK battle: {', '.join(busy)}.")
        return rooms

    def clean(self):
        """Start the battle here, so that what the service refuses under the rooms' locks (a room
        taken or gone off air since the fields were checked) shows on the form like any error.
        It writes nothing then; `save_model` only hands the battle to the admin."""
        cleaned = super().clean()
        if not self.errors:
            try:
                self.battle = pk_battle_start(
                    room_ids=[room.room_id for room in cleaned["rooms"]],
                    duration_s=cleaned["duration_s"],
                    source=PkBattle.Source.STAFF,
                    staff_user=self.staff_user,
                )
            except RequestError as refused:
                raise forms.ValidationError(refused.message) from None
        return cleaned


class PkSideInline(admin.TabularInline):
    model = PkSide
    extra = 0
    fields = ["room", "host", "accepted_at", "start_seq", "end_seq", "score"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PkBattle)
class PkBattleAdmin(admin.ModelAdmin):
    """PK battles: staff start one, and inspect each side's score and the result."""

    list_display = ["id", "state", "rooms", "starts_at", "ends_at", "winner", "source"]
    list_filter = ["state", "source"]
    search_fields = ["sides__room__room_id"]
    list_select_related = ["winner"]
    inlines = [PkSideInline]
    readonly_fields = [
        "state",
        "duration_s",
        "source",
        "app",
        "invited_by",
        "started_by",
        "created_at",
        "starts_at",
        "ends_at",
        "ended_at",
        "winner",
    ]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = type("PkBattleStartForm", (PkBattleForm,), {"staff_user": request.user})
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def get_inlines(self, request, obj):
        return [] if obj is None else self.inlines

    @admin.display(description="rooms")
    def rooms(self, battle: PkBattle) -> str:
        return ", ".join(side.room.room_id for side in battle.sides.select_related("room"))

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        obj.pk = form.battle.pk

    def save_related(self, request, form, formsets, change):
        pass  # the sides were written by pk_battle_start
