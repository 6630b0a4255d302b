"""The goal as the APIs show it: shared by the room detail (gifts.api) and the goal's own endpoint."""

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers


@extend_schema_serializer(component_name="GoalGift")
class GoalGiftSerializer(serializers.Serializer):
    gift_id = serializers.CharField()
    name = serializers.CharField()
    icon = serializers.CharField(allow_blank=True)


@extend_schema_serializer(component_name="Goal")
class GoalSerializer(serializers.Serializer):
    room_id = serializers.CharField()
    goal_id = serializers.IntegerField()
    title = serializers.CharField()
    target = serializers.IntegerField(help_text="coins, or a count of `gift`")
    gift = GoalGiftSerializer(allow_null=True, help_text="the gift counted; null: coins are counted")
    progress = serializers.IntegerField(help_text="grows with gifts, shrinks with refunds")
    reached = serializers.BooleanField(help_text="progress has reached the target (it stays so after a refund)")
    version = serializers.IntegerField(help_text="grows with every change: keep the state with the highest")


@extend_schema_serializer(component_name="PkSupporter")
class PkSupporterSerializer(serializers.Serializer):
    user_id = serializers.CharField()
    nickname = serializers.CharField()
    coins = serializers.IntegerField()


@extend_schema_serializer(component_name="PkSide")
class PkSideSerializer(serializers.Serializer):
    room_id = serializers.CharField()
    host_id = serializers.CharField()
    accepted = serializers.BooleanField(help_text="its host accepted (always, once the battle runs)")
    score = serializers.IntegerField(help_text="coins of the room's gifts before its pk_end, less refunds")
    top = PkSupporterSerializer(many=True, help_text="its top 3 supporters")


@extend_schema_serializer(component_name="PkBattle")
class PkSerializer(serializers.Serializer):
    pk_id = serializers.IntegerField()
    state = serializers.ChoiceField(choices=["pending", "running", "ended", "declined"])
    starts_at = serializers.DateTimeField(allow_null=True)
    ends_at = serializers.DateTimeField(allow_null=True)
    winner_room_id = serializers.CharField(allow_null=True, help_text="null while it runs, and on a tie")
    at = serializers.DateTimeField(help_text="when a score or the state last changed")
    sides = PkSideSerializer(many=True)
