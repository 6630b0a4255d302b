"""The host's goal for the live session (SPEC section 11)."""

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from engagement.selectors import room_goal
from engagement.serializers import GoalSerializer
from engagement.services import MAX_GOAL_TARGET, room_goal_set
from gifting_site.errors import error_responses
from gifting_site.fields import StrictCharField, StrictIntegerField
from gifts.api import ROOM_ID, room_or_404
from wallets.services import profile_for_user


class RoomGoalApi(APIView):
    """`PUT /api/rooms/{room_id}/goal/`: the host sets the goal of the room's live session."""

    @extend_schema_serializer(component_name="GoalUpdate")
    class InputSerializer(serializers.Serializer):
        title = StrictCharField(min_length=1, max_length=100)
        target = StrictIntegerField(min_value=1, max_value=MAX_GOAL_TARGET, help_text="coins, or a count of gift_id")
        gift_id = StrictCharField(
            min_length=1, max_length=64, required=False, help_text="count this gift; absent: count coins"
        )

    @extend_schema(
        parameters=[ROOM_ID],
        request=InputSerializer,
        responses={200: GoalSerializer, **error_responses(400, 401, 403, 404, 415, 503)},
    )
    def put(self, request, room_id: str):
        room = room_or_404(room_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        goal = room_goal_set(room=room, by=profile_for_user(request.user), **serializer.validated_data)
        room.goal_id = goal.pk
        return Response(room_goal(room))
