"""Viewer REST API for gifts and rooms (SPEC section 4). Views parse, call a service, answer."""

import logging
import secrets

from django.core.cache import cache
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from redis.exceptions import RedisError
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from engagement.serializers import GoalSerializer, PkSerializer
from gifting_site import metrics
from gifting_site.cache import window_count
from gifting_site.errors import RoomUnavailable, SendNotFound, error_body, error_responses
from gifting_site.fields import StrictCharField, StrictIntegerField
from gifts import selectors
from gifts.models import FailedDelivery, GameSession, GiftEvent, GiftReceipt, Room
from gifts.results import HTTP_STATUS, GiftOutcome
from gifts.services import (
    MAX_COHOSTS,
    GiftRequest,
    game_for_gifts,
    game_join,
    gift_send,
    room_cohosts_set,
    room_for_gifts,
)
from rankings.models import BOARD_PERIODS, RankingEntry
from rankings.selectors import leaderboard_top
from wallets.models import Profile
from wallets.services import profile_for_user, spending_limit_set

logger = logging.getLogger(__name__)

MAX_VALUE = 1_000_000
MAX_NUM = 100_000
MAX_DAILY_LIMIT = 10**15
WS_TICKET_TTL = 60


def ws_ticket_key(ticket: str) -> str:
    return f"ws-ticket:{ticket}"


def room_or_404(room_id: str) -> Room:
    room = Room.objects.select_related("host").filter(room_id=room_id).first()
    if room is None:
        raise RoomUnavailable(f"room {room_id} not found")
    return room


class GiftSendThrottle(UserRateThrottle):
    """GIFT_SEND_RATE per user, counted in the shared cache (Redis when REDIS_URL is set).

    DRF's throttle reads a request history and writes it back, so sends arriving together all
    pass. This one counts each user's sends per fixed window with `window_count`, so concurrent
    sends from any number of processes are counted exactly.

    While that cache is unreachable the throttle lets sends through: the database is the
    source of truth and the sender's balance still bounds what they can spend, so gifting
    keeps working through a Redis outage instead of failing every send.
    """

    scope = "gift_send"

    def allow_request(self, request, view) -> bool:
        if self.rate is None or not request.user.is_authenticated:
            return True
        now = self.timer()
        window = int(now // self.duration)
        key = f"throttle:{self.scope}:{request.user.pk}:{window}"
        try:
            count = window_count(key, timeout=int(self.duration) + 1)
        except RedisError as error:
            logger.warning("send throttle skipped, cache unreachable: %s", error)
            return True
        self.retry_in = (window + 1) * self.duration - now
        return count <= self.num_requests

    def wait(self) -> float:
        return self.retry_in


# --- documented shapes (OpenAPI components) -----------------------------------------------------
# The views answer with the payloads of `gifts.selectors`; these serializers only describe them.


# Path parameters, with the demo data's ids (`seed_demo`) as examples to try in the docs.
def path_parameter(name: str, description: str, example: str) -> OpenApiParameter:
    return OpenApiParameter(
        name, str, OpenApiParameter.PATH, description=description, examples=[OpenApiExample(example, value=example)]
    )


ROOM_ID = path_parameter("room_id", "the room's public id", "room456")
GAME_ROOM_ID = path_parameter("room_id", "the room's public id", "room123")
HOST_ID = path_parameter("user_id", "the host's public user_id", "anchor222")


class AnimationSerializer(serializers.Serializer):
    format = serializers.CharField(help_text="lottie, svga, vap, webp or png")
    url = serializers.CharField(allow_blank=True)


class PersonSerializer(serializers.Serializer):
    user_id = serializers.CharField()
    nickname = serializers.CharField()
    avatar = serializers.CharField(allow_blank=True, help_text="URL, empty when none")


class GameStateSerializer(serializers.Serializer):
    mini_game_id = serializers.CharField()
    name = serializers.CharField()
    state = serializers.ChoiceField(choices=GameSession.State.choices)
    session_id = serializers.IntegerField()


@extend_schema_serializer(component_name="Gift")
class GiftSerializer(serializers.Serializer):
    gift_id = serializers.CharField()
    name = serializers.CharField()
    price = serializers.IntegerField(help_text="coins per gift")
    icon = serializers.CharField(allow_blank=True)
    animation = AnimationSerializer()


class GiftListApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: GiftSerializer(many=True), **error_responses(503)})
    def get(self, request):
        return Response([selectors.gift_payload(gift) for gift in selectors.active_gifts()])


@extend_schema_serializer(component_name="GiftEvent")
class EventSerializer(serializers.Serializer):
    seq = serializers.IntegerField(help_text="the room's sequence number, contiguous")
    kind = serializers.ChoiceField(
        choices=GiftEvent.Kind.choices,
        help_text="`gift`; `reversal`: a refunded gift's coins taken back; `pk_end`: a PK battle ended here",
    )
    reverses_seq = serializers.IntegerField(allow_null=True, help_text="a reversal: the seq of the refunded gift")
    pk_id = serializers.IntegerField(required=False, help_text="a pk_end: its battle (GET /api/pk/{pk_id}/)")
    msg_id = serializers.CharField(allow_blank=True)
    sender = PersonSerializer(allow_null=True, help_text="null on a pk_end")
    receiver_id = serializers.CharField(allow_null=True)
    gift = inline_serializer(
        "EventGift",
        {
            "gift_id": serializers.CharField(),
            "name": serializers.CharField(),
            "icon": serializers.CharField(allow_blank=True),
            "animation": AnimationSerializer(),
        },
        allow_null=True,
    )
    value = serializers.IntegerField()
    num = serializers.IntegerField()
    count = serializers.IntegerField(help_text="value x num")
    coins = serializers.IntegerField(help_text="what the gift cost (a reversal: what its sender got back)")
    effect = serializers.CharField(allow_blank=True, help_text="the game effect of the Value tier, or empty")
    combo = serializers.IntegerField(help_text="the gift's place in its sender's streak; 0 for a reversal")
    at = serializers.DateTimeField()


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

    @extend_schema_serializer(component_name="GiftSendRequest")
    class InputSerializer(serializers.Serializer):
        gift_id = StrictCharField(min_length=1, max_length=64)
        msg_id = StrictCharField(min_length=1, max_length=128)
        value = StrictIntegerField(min_value=1, max_value=MAX_VALUE, default=1)
        num = StrictIntegerField(min_value=1, max_value=MAX_NUM, default=1)
        receiver_id = StrictCharField(max_length=64, required=False, allow_blank=True)

    @extend_schema_serializer(component_name="GiftSent")
    class OutputSerializer(serializers.Serializer):
        result = serializers.IntegerField(help_text="always 0")
        msg_id = serializers.CharField()
        coins_balance = serializers.IntegerField(help_text="the sender's coins after this gift")
        event = EventSerializer()

    @extend_schema(
        parameters=[ROOM_ID],
        request=InputSerializer,
        examples=[
            OpenApiExample("two cars", request_only=True, value={"gift_id": "car", "msg_id": "demo-1", "num": 2}),
        ],
        responses={
            200: OpenApiResponse(OutputSerializer, description="this msg_id was sent before: the stored answer"),
            201: OpenApiResponse(OutputSerializer, description="sent and paid for"),
            **error_responses(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
        },
    )
    @metrics.SEND_SECONDS.time()
    def post(self, request, room_id: str):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        room, session = room_for_gifts(room_id)
        sender = profile_for_user(request.user)
        outcome = gift_send(
            GiftRequest(
                scope=f"user:{sender.pk}",
                msg_id=data["msg_id"],
                sender=sender,
                room=room,
                game_session=game_for_gifts(room, session),
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


@extend_schema_serializer(component_name="GameDelivery")
class GameDeliverySerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["not_relayed", "pending", "delivered", "failed", "cancelled"],
        help_text="not_relayed: the gift's game is not relayed to the game vendor, or the gift was refused",
    )
    attempts = serializers.IntegerField(help_text="calls to the game vendor that carried the gift")
    code = serializers.IntegerField(allow_null=True, help_text="the vendor's last code or Result")
    message = serializers.CharField(allow_blank=True)
    vendor_msg_id = serializers.CharField(allow_null=True, help_text="the MsgId the game knows the gift by")
    delivered_at = serializers.DateTimeField(allow_null=True)


class SendDetailApi(APIView):
    """What became of one of the caller's sends: the stored result, and whether the game got it."""

    @extend_schema_serializer(component_name="SendDetail")
    class OutputSerializer(serializers.Serializer):
        msg_id = serializers.CharField()
        result = serializers.IntegerField(help_text="0, or the per-gift code it was refused with")
        message = serializers.CharField()
        coins_balance = serializers.IntegerField(allow_null=True, help_text="the sender's coins after the gift")
        event = EventSerializer(allow_null=True, help_text="the room event, for a gift that was sent")
        delivery = GameDeliverySerializer(help_text="what the game vendor made of the gift (game relay)")
        refunded = serializers.BooleanField(help_text="true once the gift was refunded (its coins went back)")

    @extend_schema(
        parameters=[path_parameter("msg_id", "the msg_id the gift was sent with", "demo-1")],
        responses={200: OutputSerializer, **error_responses(401, 403, 404, 503)},
    )
    def get(self, request, msg_id: str):
        sender = profile_for_user(request.user)
        receipt = (
            GiftReceipt.objects.filter(scope=f"user:{sender.pk}", msg_id=msg_id)
            .select_related("event__sender", "event__receiver", "event__gift", "event__reverses")
            .first()
        )
        if receipt is None:
            raise SendNotFound(f"no gift was sent with msg_id {msg_id}")
        return Response(selectors.send_detail(receipt))


class RoomDetailApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema_serializer(component_name="RoomDetail")
    class OutputSerializer(serializers.Serializer):
        room_id = serializers.CharField()
        title = serializers.CharField(allow_blank=True)
        host = PersonSerializer()
        cohosts = PersonSerializer(many=True, help_text="who else may receive gifts here (`receiver_id`)")
        is_live = serializers.BooleanField()
        seq = serializers.IntegerField(help_text="the seq of the room's newest gift event, 0 before the first")
        game = GameStateSerializer(allow_null=True, help_text="the room's open game session, if any")
        goal = GoalSerializer(allow_null=True, help_text="the goal of the live session, if the host set one")
        pk = PkSerializer(allow_null=True, help_text="the PK battle the room fights now, if any")

    @extend_schema(parameters=[ROOM_ID], responses={200: OutputSerializer, **error_responses(404, 503)})
    def get(self, request, room_id: str):
        return Response(selectors.room_detail(room_or_404(room_id)))


class RoomCohostsApi(APIView):
    """`PUT /api/rooms/{room_id}/cohosts/`: the host names who co-hosts the room (SPEC section 11)."""

    @extend_schema_serializer(component_name="RoomCohostsUpdate")
    class InputSerializer(serializers.Serializer):
        user_ids = serializers.ListField(
            child=StrictCharField(min_length=1, max_length=64),
            max_length=MAX_COHOSTS,
            help_text=f"every co-host, replacing the previous ones (at most {MAX_COHOSTS}; [] for none)",
        )

    @extend_schema_serializer(component_name="RoomCohosts")
    class OutputSerializer(serializers.Serializer):
        room_id = serializers.CharField()
        cohosts = PersonSerializer(many=True)

    @extend_schema(
        parameters=[ROOM_ID],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 403, 404, 415, 503)},
    )
    def put(self, request, room_id: str):
        room = room_or_404(room_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cohosts = room_cohosts_set(
            room=room, by=profile_for_user(request.user), user_ids=serializer.validated_data["user_ids"]
        )
        return Response({"room_id": room.room_id, "cohosts": [selectors.person_payload(p) for p in cohosts]})


class LeaderboardApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema_serializer(component_name="LeaderboardQuery")
    class QuerySerializer(serializers.Serializer):
        period = serializers.ChoiceField(choices=BOARD_PERIODS, default=RankingEntry.Period.LIVE)
        limit = serializers.IntegerField(min_value=1, max_value=100, default=20)

    @extend_schema_serializer(component_name="Leaderboard")
    class OutputSerializer(serializers.Serializer):
        period = serializers.ChoiceField(choices=BOARD_PERIODS)
        entries = inline_serializer(
            "LeaderboardEntry",
            {
                "rank": serializers.IntegerField(),
                "user_id": serializers.CharField(),
                "nickname": serializers.CharField(),
                "avatar": serializers.CharField(allow_blank=True),
                "coins": serializers.IntegerField(help_text="coins sent in the period"),
            },
            many=True,
        )

    @extend_schema(
        parameters=[ROOM_ID, QuerySerializer], responses={200: OutputSerializer, **error_responses(400, 404, 503)}
    )
    def get(self, request, room_id: str):
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        room = room_or_404(room_id)
        period = query.validated_data["period"]
        entries = leaderboard_top(room=room, period=period, limit=query.validated_data["limit"])
        return Response({"period": period, "entries": entries})


class EventListApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema_serializer(component_name="EventsQuery")
    class QuerySerializer(serializers.Serializer):
        since = serializers.IntegerField(min_value=0, default=0)
        limit = serializers.IntegerField(min_value=1, max_value=selectors.REPLAY_LIMIT, default=100)

    @extend_schema_serializer(component_name="RoomEvents")
    class OutputSerializer(serializers.Serializer):
        room_id = serializers.CharField()
        seq = serializers.IntegerField(help_text="the room's newest seq")
        events = EventSerializer(many=True, help_text="events after `since`, oldest first")

    @extend_schema(
        parameters=[ROOM_ID, QuerySerializer], responses={200: OutputSerializer, **error_responses(400, 404, 503)}
    )
    def get(self, request, room_id: str):
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        room = room_or_404(room_id)
        events = selectors.events_after(room, since=query.validated_data["since"], limit=query.validated_data["limit"])
        return Response({"room_id": room.room_id, "seq": room.last_seq, "events": events})


class GameJoinApi(APIView):
    @extend_schema_serializer(component_name="GameJoined")
    class OutputSerializer(serializers.Serializer):
        room_id = serializers.CharField()
        game = GameStateSerializer()
        joined = serializers.BooleanField()

    @extend_schema(
        parameters=[GAME_ROOM_ID],
        request=None,
        responses={200: OutputSerializer, **error_responses(401, 403, 404, 503)},
    )
    def post(self, request, room_id: str):
        room = room_or_404(room_id)
        session = game_join(room=room, profile=profile_for_user(request.user))
        return Response({"room_id": room.room_id, "game": selectors.game_state_payload(session), "joined": True})


class SpendingLimitApi(APIView):
    """`GET|PUT /api/me/limits/`: the caller's own daily spending limit (SPEC section 10)."""

    @extend_schema_serializer(component_name="SpendingLimitUpdate")
    class InputSerializer(serializers.Serializer):
        daily_coins = StrictIntegerField(
            min_value=0,
            max_value=MAX_DAILY_LIMIT,
            allow_null=True,
            help_text="coins a UTC day; null: none. A cut applies at once, a raise or null after 24 hours",
        )

    @extend_schema_serializer(component_name="SpendingLimit")
    class OutputSerializer(serializers.Serializer):
        daily_coins = serializers.IntegerField(allow_null=True, help_text="your own limit in force now")
        pending = inline_serializer(
            "SpendingLimitRaise",
            {
                "daily_coins": serializers.IntegerField(allow_null=True, help_text="null: the limit is removed"),
                "from": serializers.DateTimeField(),
            },
            allow_null=True,
            help_text="a raise you asked for, and when it applies",
        )
        staff_daily_coins = serializers.IntegerField(allow_null=True, help_text="set by staff")
        everyone_daily_coins = serializers.IntegerField(allow_null=True, help_text="the service's limit for all")
        effective_daily_coins = serializers.IntegerField(allow_null=True, help_text="the lowest of the three")
        spent_today = serializers.IntegerField(help_text="coins spent on gifts today (UTC), refunds deducted")
        left_today = serializers.IntegerField(allow_null=True)

    @extend_schema(responses={200: OutputSerializer, **error_responses(401, 503)})
    def get(self, request):
        return Response(selectors.spending_limit_detail(profile_for_user(request.user)))

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, **error_responses(400, 401, 415, 503)})
    def put(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        profile = profile_for_user(request.user)
        spending_limit_set(profile=profile, daily_coins=serializer.validated_data["daily_coins"])
        return Response(selectors.spending_limit_detail(profile))


class HostGiftWallApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema_serializer(component_name="GiftWall")
    class OutputSerializer(serializers.Serializer):
        user_id = serializers.CharField()
        gifts = inline_serializer(
            "GiftWallRow",
            {
                "gift_id": serializers.CharField(),
                "name": serializers.CharField(),
                "price": serializers.IntegerField(),
                "icon": serializers.CharField(allow_blank=True),
                "animation": AnimationSerializer(),
                "count": serializers.IntegerField(help_text="how many of this gift the host received"),
            },
            many=True,
        )

    @extend_schema(parameters=[HOST_ID], responses={200: OutputSerializer, **error_responses(404, 503)})
    def get(self, request, user_id: str):
        host = get_object_or_404(Profile, user_id=user_id)
        return Response({"user_id": host.user_id, "gifts": selectors.host_gift_wall(host.pk)})


class WsTicketApi(APIView):
    """A single-use ticket that lets a websocket say who it is without a long-lived token in the URL."""

    @extend_schema(
        request=None,
        responses={
            201: inline_serializer(
                "WsTicket", {"ticket": serializers.CharField(), "expires_in": serializers.IntegerField()}
            ),
            **error_responses(401, 403, 503),
        },
    )
    def post(self, request):
        ticket = secrets.token_urlsafe(24)
        cache.set(ws_ticket_key(ticket), request.user.pk, timeout=WS_TICKET_TTL)
        return Response({"ticket": ticket, "expires_in": WS_TICKET_TTL}, status=201)
