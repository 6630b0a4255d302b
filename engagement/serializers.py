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
