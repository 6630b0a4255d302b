"""The host's goal for the live session, and PK battles between rooms (SPEC section 11)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from engagement.selectors import pk_payload, pk_state, room_goal
from engagement.serializers import GoalSerializer, PkSerializer
from engagement.services import (
    MAX_GOAL_TARGET,
    MAX_PK_ROOMS,
    MAX_PK_SECONDS,
    MIN_PK_ROOMS,
    MIN_PK_SECONDS,
    pk_battle_answer,
    pk_battle_invite,
    pk_battle_settle,
    room_goal_set,
)
from gifting_site.errors import PkNotFound, error_responses
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


PK_ID = OpenApiParameter("pk_id", int, OpenApiParameter.PATH, description="the PK battle's id")


class PkCreateApi(APIView):
    """`POST /api/pk/`: a host invites other rooms to a PK battle; it runs once their hosts accept."""

    @extend_schema_serializer(component_name="PkInvite")
    class InputSerializer(serializers.Serializer):
        room_ids = serializers.ListField(
            child=StrictCharField(min_length=1, max_length=64),
            min_length=MIN_PK_ROOMS,
            max_length=MAX_PK_ROOMS,
            help_text="the rooms, one of them yours",
        )
        duration_s = StrictIntegerField(min_value=MIN_PK_SECONDS, max_value=MAX_PK_SECONDS)

    @extend_schema(request=InputSerializer, responses={201: PkSerializer, **error_responses(400, 401, 403, 404, 409)})
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        battle = pk_battle_invite(host=profile_for_user(request.user), **serializer.validated_data)
        return Response(pk_payload(battle), status=201)


class PkDetailApi(APIView):
    """`GET /api/pk/{pk_id}/`: the battle, its scores and each side's top supporters."""

    permission_classes = [AllowAny]

    @extend_schema(parameters=[PK_ID], responses={200: PkSerializer, **error_responses(404, 503)})
    def get(self, request, pk_id: int):
        pk_battle_settle(pk_id)
        return Response(pk_state_or_404(pk_id))


class PkAnswerApi(APIView):
    """`POST /api/pk/{pk_id}/accept/` and `.../decline/`: a host answers an invite."""

    accept = True

    @extend_schema(
        parameters=[PK_ID], request=None, responses={200: PkSerializer, **error_responses(401, 403, 404, 409)}
    )
    def post(self, request, pk_id: int):
        pk_battle_answer(pk_id=pk_id, host=profile_for_user(request.user), accept=self.accept)
        return Response(pk_state_or_404(pk_id))


class PkDeclineApi(PkAnswerApi):
    accept = False


def pk_state_or_404(pk_id: int) -> dict:
    if (state := pk_state(pk_id)) is None:
        raise PkNotFound(f"PK battle {pk_id} not found")
    return state
