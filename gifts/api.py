"""Viewer REST API for gifts and rooms (SPEC section 4). Views parse, call a service, answer."""

import secrets

from django.core.cache import cache
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from gifting_site.errors import RoomUnavailable, error_body
from gifting_site.fields import StrictCharField, StrictIntegerField
from gifts import selectors
from gifts.models import FailedDelivery, Room
from gifts.results import HTTP_STATUS, GiftOutcome
from gifts.services import GiftRequest, game_join, gift_send, room_for_gifts
from rankings.models import RankingEntry
from rankings.selectors import leaderboard_top
from wallets.models import Profile
from wallets.services import profile_for_user

MAX_VALUE = 1_000_000
MAX_NUM = 100_000
WS_TICKET_TTL = 60


def ws_ticket_key(ticket: str) -> str:
    return f"ws-ticket:{ticket}"


def room_or_404(room_id: str) -> Room:
    room = Room.objects.select_related("host").filter(room_id=room_id).first()
    if room is None:
        raise RoomUnavailable(f"room {room_id} not found")
    return room


class GiftSendThrottle(UserRateThrottle):
    scope = "gift_send"


class GiftListApi(APIView):
    permission_classes = [AllowAny]

    class OutputSerializer(serializers.Serializer):
        gift_id = serializers.CharField()
        name = serializers.CharField()
        price = serializers.IntegerField()
        icon = serializers.CharField()
        animation = inline_serializer("Animation", {"format": serializers.CharField(), "url": serializers.CharField()})

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        return Response([selectors.gift_payload(gift) for gift in selectors.active_gifts()])


class EventSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    msg_id = serializers.CharField()
    sender = inline_serializer(
        "EventSender",
        {"user_id": serializers.CharField(), "nickname": serializers.CharField(), "avatar": serializers.CharField()},
    )
    receiver_id = serializers.CharField()
    gift = inline_serializer(
        "EventGift",
        {
            "gift_id": serializers.CharField(),
            "name": serializers.CharField(),
            "icon": serializers.CharField(),
            "animation": inline_serializer(
                "EventAnimation", {"format": serializers.CharField(), "url": serializers.CharField()}
            ),
        },
    )
    value = serializers.IntegerField()
    num = serializers.IntegerField()
    count = serializers.IntegerField()
    coins = serializers.IntegerField()
    effect = serializers.CharField()
    combo = serializers.IntegerField()
    at = serializers.DateTimeField()


class ErrorSerializer(serializers.Serializer):
    code = serializers.IntegerField()
    message = serializers.CharField()


def outcome_response(outcome: GiftOutcome) -> Response:
    """A gift's outcome as HTTP: 201 new, 200 replayed, 4xx/5xx `{code, message}` otherwise."""
    if not outcome.ok:
        return Response(error_body(outcome.result, outcome.message), status=HTTP_STATUS[outcome.result])
    body = {
        "result": 0,
        "msg_id": outcome.msg_id,
        "coins_balance": outcome.coins_balance,
        "event": selectors.event_payload(outcome.event),
    }
    return Response(body, status=200 if outcome.replayed else 201)


class GiftSendApi(APIView):
    throttle_classes = [GiftSendThrottle]

    class InputSerializer(serializers.Serializer):
        gift_id = StrictCharField(max_length=64)
        msg_id = StrictCharField(min_length=1, max_length=128)
        value = StrictIntegerField(min_value=1, max_value=MAX_VALUE, default=1)
        num = StrictIntegerField(min_value=1, max_value=MAX_NUM, default=1)
        receiver_id = StrictCharField(max_length=64, required=False, allow_blank=True)

    class OutputSerializer(serializers.Serializer):
        result = serializers.IntegerField()
        msg_id = serializers.CharField()
        coins_balance = serializers.IntegerField()
        event = EventSerializer()

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            201: OutputSerializer,
            400: ErrorSerializer,
            404: ErrorSerializer,
            409: ErrorSerializer,
            422: ErrorSerializer,
            429: ErrorSerializer,
        },
    )
    def post(self, request, room_id: str):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        room = room_for_gifts(room_id)
        sender = profile_for_user(request.user)
        session = selectors.room_game_session(room)
        outcome = gift_send(
            GiftRequest(
                scope=f"user:{sender.pk}",
                msg_id=data["msg_id"],
                sender=sender,
                room=room,
                game_session=session if session and session.state == session.State.STARTED else None,
                gift_code=data["gift_id"],
                value=data["value"],
                num=data["num"],
                receiver_code=data.get("receiver_id") or None,
                source=FailedDelivery.Source.VIEWER_API,
                request_id=secrets.token_hex(8),
                raw_item=request.data,
            )
        )
        return outcome_response(outcome)


class RoomDetailApi(APIView):
    permission_classes = [AllowAny]

    def get(self, request, room_id: str):
        return Response(selectors.room_detail(room_or_404(room_id)))


class LeaderboardApi(APIView):
    permission_classes = [AllowAny]

    class QuerySerializer(serializers.Serializer):
        period = serializers.ChoiceField(choices=RankingEntry.Period.choices, default=RankingEntry.Period.LIVE)
        limit = serializers.IntegerField(min_value=1, max_value=100, default=20)

    @extend_schema(parameters=[QuerySerializer])
    def get(self, request, room_id: str):
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        room = room_or_404(room_id)
        period = query.validated_data["period"]
        entries = leaderboard_top(room=room, period=period, limit=query.validated_data["limit"])
        return Response({"period": period, "entries": entries})


class EventListApi(APIView):
    permission_classes = [AllowAny]

    class QuerySerializer(serializers.Serializer):
        since = serializers.IntegerField(min_value=0, default=0)
        limit = serializers.IntegerField(min_value=1, max_value=selectors.REPLAY_LIMIT, default=100)

    @extend_schema(parameters=[QuerySerializer], responses=EventSerializer(many=True))
    def get(self, request, room_id: str):
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        room = room_or_404(room_id)
        events = selectors.events_after(room, since=query.validated_data["since"], limit=query.validated_data["limit"])
        return Response({"room_id": room.room_id, "seq": room.last_seq, "events": events})


class GameJoinApi(APIView):
    @extend_schema(request=None)
    def post(self, request, room_id: str):
        room = room_or_404(room_id)
        session = game_join(room=room, profile=profile_for_user(request.user))
        return Response({"room_id": room.room_id, "game": selectors.game_state_payload(session), "joined": True})


class HostGiftWallApi(APIView):
    permission_classes = [AllowAny]

    def get(self, request, user_id: str):
        host = get_object_or_404(Profile, user_id=user_id)
        return Response({"user_id": host.user_id, "gifts": selectors.host_gift_wall(host.pk)})


class WsTicketApi(APIView):
    """A single-use ticket that lets a websocket say who it is without a long-lived token in the URL."""

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "WsTicket", {"ticket": serializers.CharField(), "expires_in": serializers.IntegerField()}
        ),
    )
    def post(self, request):
        ticket = secrets.token_urlsafe(24)
        cache.set(ws_ticket_key(ticket), request.user.pk, timeout=WS_TICKET_TTL)
        return Response({"ticket": ticket, "expires_in": WS_TICKET_TTL}, status=201)
