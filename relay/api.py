"""The game vendor's calls to us: its game-report callback (SPEC section 9)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions as drf
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from gifting_site.errors import (
    BACKEND_UNAVAILABLE,
    AuthenticationFailed,
    MalformedRequest,
    RoomUnavailable,
    ServiceUnavailable,
)
from gifting_site.fields import StrictCharField, StrictIntegerField
from gifts.server_api import json_body, validated
from relay.callbacks import callback_verify
from relay.models import GameReport
from relay.services import game_report_receive


@extend_schema_field({"oneOf": [{"type": "string", "maxLength": 128}, {"type": "integer"}]})
class RoundIdField(serializers.Field):
    """ZEGO's RoundId: a string or a number, kept as text."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (str, int)) or len(str(data)) > 128:
            raise serializers.ValidationError("must be a string or an integer, at most 128 characters")
        return str(data)

    def to_representation(self, value):
        return value


class GameReportSerializer(serializers.Serializer):
    ReportId = StrictCharField(min_length=1, max_length=128, help_text="the vendor's id of this report")
    ReportType = StrictIntegerField(
        min_value=GameReport.ReportType.STARTED,
        max_value=GameReport.ReportType.SETTLEMENT,
        help_text="1 game started, 2 settlement",
    )
    RoomId = StrictCharField(min_length=1, max_length=64)
    MiniGameId = StrictCharField(min_length=1, max_length=64)
    RoundId = RoundIdField(required=False, default="")
    Data = serializers.JSONField(required=False, allow_null=True, default=None, help_text="kept as sent")


def vendor_answer(code: int, message: str, status: int = 200) -> Response:
    return Response({"Code": code, "Message": message}, status=status)


class GameReportCallbackApi(APIView):
    """`POST /api/v1/callbacks/minigame/?signature=..&timestamp=..&nonce=..`: the vendor reports a game."""

    authentication_classes: list = []  # the signature in the query string is the authentication
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="minigame_callback",
        summary="Game report callback from the game vendor (signed)",
        description=(
            "ReportType 1 starts the room's session of the game, 2 ends it and keeps the settlement (Data). "
            "The same ReportId again is acknowledged and changes nothing. Unknown room or game: Code 7200004."
        ),
        auth=[],
        parameters=[
            OpenApiParameter(name, str, OpenApiParameter.QUERY, required=True, description=description)
            for name, description in (
                ("signature", "hex sha1 of sorted(GAME_VENDOR_CALLBACK_SECRET, timestamp, nonce) joined"),
                ("timestamp", "Unix seconds, within 600 s of ours"),
                ("nonce", "random"),
            )
        ],
        request=GameReportSerializer,
        responses={
            (status, "application/json"): inline_serializer(
                f"GameReportAnswer{status}", {"Code": serializers.IntegerField(), "Message": serializers.CharField()}
            )
            for status in (200, 400, 401, 503)
        },
    )
    def post(self, request):
        try:
            callback_verify(request.query_params)
            data = validated(GameReportSerializer, json_body(request))
            game_report_receive(
                report_id=data["ReportId"],
                report_type=data["ReportType"],
                room_id=data["RoomId"],
                mini_game_id=data["MiniGameId"],
                round_id=data["RoundId"],
                data=data["Data"],
            )
        except AuthenticationFailed as error:
            return vendor_answer(error.code, error.message, status=401)
        except MalformedRequest as error:
            return vendor_answer(error.code, error.message, status=400)
        except RoomUnavailable as error:
            # Well formed and signed, about a room or game we do not have: the vendor need not retry.
            return vendor_answer(error.code, error.message)
        except BACKEND_UNAVAILABLE:
            unavailable = ServiceUnavailable()
            return vendor_answer(unavailable.code, unavailable.message, status=503)
        return vendor_answer(0, "succeed")

    def handle_exception(self, exc):
        """What DRF refuses before `post` runs (a GET, say) still gets the vendor's answer shape."""
        if isinstance(exc, drf.APIException):
            return vendor_answer(MalformedRequest.code, str(exc.detail), status=exc.status_code)
        return super().handle_exception(exc)
