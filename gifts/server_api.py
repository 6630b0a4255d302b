"""Server API for business servers: ZEGO's SendDanmakuGifts shape, plus TopUp and RefundGift (SPEC sections 5, 10).

Every answer is HTTP 200 with `{Code, Message, RequestId[, Data]}`, as ZEGO's API answers;
the outcome is in `Code`. A request-level refusal (Code != 0) records nothing, so every
MsgId in it may be sent again as is, in a newly signed request.
"""

import hashlib
import logging
import re
import secrets
import time
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import IntegrityError
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import exceptions as drf
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from engagement.models import PkBattle
from engagement.services import MAX_PK_ROOMS, MAX_PK_SECONDS, MIN_PK_ROOMS, MIN_PK_SECONDS, pk_battle_start
from gifting_site.cache import window_count
from gifting_site.errors import (
    BACKEND_UNAVAILABLE,
    GameIdInvalid,
    MalformedRequest,
    NotEnoughEarnings,
    RateLimited,
    RequestError,
    ServiceUnavailable,
)
from gifting_site.fields import StrictCharField, StrictIntegerField
from gifting_site.logs import fields
from gifts.api import MAX_NUM, MAX_VALUE
from gifts.models import ServerApp
from gifts.selectors import sends_describe
from gifts.services import (
    ServerGift,
    app_reference,
    game_for_gifts,
    room_for_gifts,
    server_gifts_send,
    server_topup,
)
from gifts.signatures import request_authenticate
from refunds.services import server_gift_refund  # the refunds app's one door for business servers
from wallets.models import Profile
from wallets.services import (
    InsufficientBalance,
    TopUpNotFound,
    TransferConflict,
    coins_account,
    earnings_account,
    payout_create,
    topup_reverse,
)

logger = logging.getLogger(__name__)

# One call carries one merge window of a room's gifts; ZEGO suggests merging every 50-200 ms.
MAX_GIFTS_PER_CALL = 100
MAX_TOPUP = 100_000_000
SUCCEED = "succeed"
ACTIONS = (
    "SendDanmakuGifts",
    "TopUp",
    "DescribeDanmakuMsgResults",
    "RefundGift",
    "ReverseTopUp",
    "Payout",
    "StartPK",
)
MAX_DESCRIBED = 100

_USER_ID = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")


# --- shapes ------------------------------------------------------------------------------------


class UserInfoSerializer(serializers.Serializer):
    UserId = StrictCharField(max_length=64, help_text="letters, digits and _ . @ + -")
    Nickname = StrictCharField(max_length=64, required=False, allow_blank=True)
    Avatar = StrictCharField(max_length=500, required=False, allow_blank=True, help_text="http(s) URL")
    # ZEGO documents Sex as a number in one place and a string in another: both are accepted.
    Sex = serializers.ChoiceField(choices=[0, 1, 2], required=False, help_text="0 unknown, 1 male, 2 female")

    def validate_UserId(self, value: str) -> str:  # noqa: N802 - ZEGO's field name
        if not _USER_ID.fullmatch(value):
            raise serializers.ValidationError("must be 1-64 letters, digits or _ . @ + -")
        return value

    def validate_Avatar(self, value: str) -> str:  # noqa: N802 - ZEGO's field name
        if value and not value.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("must be an http(s) URL")
        return value


class GiftInfoSerializer(serializers.Serializer):
    GiftId = StrictCharField(max_length=64)
    Value = StrictIntegerField(min_value=1, max_value=MAX_VALUE, default=1, help_text="gifts per effect (a tier)")
    Num = StrictIntegerField(min_value=1, max_value=MAX_NUM, help_text="how many effects")


class GiftItemSerializer(serializers.Serializer):
    UserInfo = UserInfoSerializer()
    GiftInfo = GiftInfoSerializer()
    Timestamp = StrictIntegerField(min_value=0, max_value=2**63 - 1, required=False, help_text="Unix ms")
    ReceiverId = StrictCharField(max_length=64, required=False, allow_blank=True)
    MsgId = StrictCharField(min_length=1, max_length=128, help_text="idempotency key, unique per AppId")


class SendDanmakuGiftsSerializer(serializers.Serializer):
    RoomId = StrictCharField(min_length=1, max_length=64)
    MiniGameId = StrictCharField(
        max_length=64, required=False, allow_blank=True, allow_null=True, help_text="omit or empty: no game"
    )
    GiftList = GiftItemSerializer(many=True, allow_empty=False, max_length=MAX_GIFTS_PER_CALL)


class TopUpSerializer(serializers.Serializer):
    UserId = StrictCharField(max_length=64)
    Amount = StrictIntegerField(min_value=1, max_value=MAX_TOPUP)
    Reference = StrictCharField(
        min_length=1, max_length=128, help_text="the payment's id; a retry with it credits nothing more"
    )

    def validate_UserId(self, value: str) -> str:  # noqa: N802 - ZEGO-style field name
        return UserInfoSerializer().validate_UserId(value)


class DescribeDanmakuMsgResultsSerializer(serializers.Serializer):
    MsgIdList = serializers.ListField(
        child=StrictCharField(min_length=1, max_length=128),
        allow_empty=False,
        max_length=MAX_DESCRIBED,
        help_text="MsgIds this app sent",
    )


class RefundGiftSerializer(serializers.Serializer):
    MsgId = StrictCharField(
        min_length=1, max_length=128, help_text="the gift's MsgId: sent by this app, or by the user"
    )
    UserId = StrictCharField(max_length=64, help_text="who sent the gift")
    Reason = StrictCharField(max_length=200, required=False, allow_blank=True, help_text="kept with the refund")


class ReverseTopUpSerializer(serializers.Serializer):
    Reference = StrictCharField(min_length=1, max_length=128, help_text="the Reference of this app's TopUp")
    Reason = StrictCharField(max_length=200, required=False, allow_blank=True, help_text="kept with the reversal")


class PayoutSerializer(serializers.Serializer):
    UserId = StrictCharField(max_length=64, help_text="the host paid")
    Amount = StrictIntegerField(min_value=1, max_value=MAX_TOPUP, help_text="coins out of their earnings")
    Reference = StrictCharField(
        min_length=1, max_length=128, help_text="the payment's id; a retry with it pays nothing more"
    )


class StartPkSerializer(serializers.Serializer):
    RoomIds = serializers.ListField(
        child=StrictCharField(min_length=1, max_length=64),
        min_length=MIN_PK_ROOMS,
        max_length=MAX_PK_ROOMS,
        help_text="the live rooms that compete",
    )
    DurationS = StrictIntegerField(min_value=MIN_PK_SECONDS, max_value=MAX_PK_SECONDS, help_text="seconds")


class DescribedDeliverySerializer(serializers.Serializer):
    Status = serializers.CharField(help_text="not_relayed, pending, delivered, failed or cancelled")
    Code = serializers.IntegerField(allow_null=True, help_text="the game vendor's last code or Result")
    Message = serializers.CharField(allow_blank=True)


class GiftResultSerializer(serializers.Serializer):
    Result = serializers.IntegerField(
        help_text="0 or a per-gift code (10003-10009, 10011); DescribeDanmakuMsgResults: 10010 not found"
    )
    Msg = serializers.CharField()
    MsgId = serializers.CharField()
    Delivery = DescribedDeliverySerializer(
        allow_null=True,
        required=False,
        help_text="DescribeDanmakuMsgResults only: the game delivery (not_relayed if not found)",
    )


class GiftResultsDataSerializer(serializers.Serializer):
    Results = GiftResultSerializer(many=True, help_text="one per gift, in GiftList (or MsgIdList) order")


class TopUpDataSerializer(serializers.Serializer):
    UserId = serializers.CharField()
    Balance = serializers.IntegerField(help_text="the user's coins now")


class RefundGiftDataSerializer(serializers.Serializer):
    MsgId = serializers.CharField()
    Coins = serializers.IntegerField(help_text="given back to the sender: what the gift cost")
    Balance = serializers.IntegerField(help_text="the sender's coins right after the refund")


class ReverseTopUpDataSerializer(serializers.Serializer):
    UserId = serializers.CharField()
    Reference = serializers.CharField()
    Amount = serializers.IntegerField(help_text="the top-up's amount")
    Taken = serializers.IntegerField(help_text="coins taken from the user")
    Owed = serializers.IntegerField(help_text="the rest, owed: the user cannot send gifts until a top-up pays it")


class PayoutDataSerializer(serializers.Serializer):
    UserId = serializers.CharField()
    Reference = serializers.CharField()
    Amount = serializers.IntegerField()
    Earnings = serializers.IntegerField(help_text="the host's earnings left")


class StartPkDataSerializer(serializers.Serializer):
    PkId = serializers.IntegerField(help_text="GET /api/pk/{PkId}/ shows it")
    EndsAt = serializers.DateTimeField()


class ServerApiAnswerSerializer(serializers.Serializer):
    Code = serializers.IntegerField(help_text="0, or the request-level refusal: nothing was recorded")
    Message = serializers.CharField()
    RequestId = serializers.CharField()
    Data = PolymorphicProxySerializer(
        component_name="ServerApiData",
        serializers=[
            GiftResultsDataSerializer,
            TopUpDataSerializer,
            RefundGiftDataSerializer,
            ReverseTopUpDataSerializer,
            PayoutDataSerializer,
            StartPkDataSerializer,
        ],
        resource_type_field_name=None,
        required=False,
        help_text="present when Code is 0",
    )


# --- request-level checks ----------------------------------------------------------------------


def json_body(request) -> dict[str, Any]:
    try:
        data = request.data
    except (drf.ParseError, drf.UnsupportedMediaType) as error:
        raise MalformedRequest(f"body: {error.detail}") from None
    except (RequestDataTooBig, SuspiciousOperation):
        raise MalformedRequest("body: too large") from None
    except RecursionError:
        raise MalformedRequest("body: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise MalformedRequest("body: must be a JSON object")
    return data


def validated(serializer_class: type[serializers.Serializer], data: dict[str, Any]) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise MalformedRequest(describe_errors(serializer.errors))
    return serializer.validated_data


def describe_errors(detail: Any, prefix: str = "") -> str:
    """`GiftList[2].GiftInfo.Value: reason`: the first problem, named the way the caller wrote it."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if value:
                if isinstance(key, int):  # a list's errors come keyed by item index
                    name = f"{prefix}[{key}]"
                elif key == "non_field_errors":
                    name = prefix
                else:
                    name = f"{prefix}.{key}" if prefix else str(key)
                return describe_errors(value, name)
    if isinstance(detail, list):
        if detail and all(isinstance(item, dict) for item in detail):
            for index, item in enumerate(detail):
                if item:
                    return describe_errors(item, f"{prefix}[{index}]")
        messages = [str(item) for item in detail if not isinstance(item, (dict, list))]
        if messages:
            return f"{prefix or 'body'}: {' '.join(messages)}"
    return f"{prefix or 'body'}: {detail}"


def room_call_admit(room_id: str, *, now: float | None = None) -> None:
    """At most SERVER_API_ROOM_RATE calls per second for one room, across every server process.

    A counter per room and wall-clock second in the shared cache (Redis when REDIS_URL is set).
    """
    second = int(time.time() if now is None else now)
    # A RoomId may hold any character (spaces, non-ASCII) that a cache key should not: its digest keys it.
    room_key = hashlib.blake2b(room_id.encode(), digest_size=16).hexdigest()
    count = window_count(f"server-api:rate:{room_key}:{second}", timeout=5)
    if count > settings.SERVER_API_ROOM_RATE:
        raise RateLimited(f"rate limited: more than {settings.SERVER_API_ROOM_RATE} calls per second for this room")


# --- the endpoint ------------------------------------------------------------------------------


def answer(request_id: str, code: int, message: str, data: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"Code": code, "Message": message, "RequestId": request_id}
    if data is not None:
        body["Data"] = data
    return Response(body, status=200)


SIGNING_PARAMETERS = [
    OpenApiParameter("Action", str, OpenApiParameter.QUERY, required=True, enum=list(ACTIONS)),
    OpenApiParameter("AppId", str, OpenApiParameter.QUERY, required=True, description="the app's id (admin)"),
    OpenApiParameter(
        "SignatureNonce", str, OpenApiParameter.QUERY, required=True, description="random, new for every call"
    ),
    OpenApiParameter(
        "Timestamp", int, OpenApiParameter.QUERY, required=True, description="Unix seconds, within 600 s of ours"
    ),
    OpenApiParameter("SignatureVersion", str, OpenApiParameter.QUERY, required=True, enum=["2.0"]),
    OpenApiParameter(
        "Signature",
        str,
        OpenApiParameter.QUERY,
        required=True,
        description="hex md5(AppId + SignatureNonce + ServerSecret + Timestamp)",
    ),
]


class ServerApi(APIView):
    """`POST /api/v1/?Action=...`: signed calls from a business server; ZEGO's request and answer shapes."""

    authentication_classes: list = []  # the signature in the query string is the authentication
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="server_api",
        summary="SendDanmakuGifts / TopUp / DescribeDanmakuMsgResults / RefundGift / ReverseTopUp / Payout / StartPK "
        "(server API, signed)",
        description=(
            "Drop-in for ZEGO's mini-game gift API. Always HTTP 200 with {Code, Message, RequestId, Data}; "
            "Code != 0 is a request-level refusal (7200001 auth, 7200002 stale or replayed, 7200003 malformed, "
            "7200004 room, 7200005 rate, 7202001/7202002/7206001 game, 10005 database or Redis unavailable) "
            "and records nothing. "
            "SendDanmakuGifts answers one Result per gift in GiftList order; DescribeDanmakuMsgResults "
            "answers each MsgId's stored Result (10010 when not found) and its game Delivery. "
            "RefundGift gives a paid gift's cost back to its sender once (again: the same answer; "
            "10010 when no paid gift of that UserId has the MsgId). ReverseTopUp takes a TopUp back once "
            "(a chargeback): the coins the user holds, the rest owed (sends answer 10011 until a top-up pays it). "
            "Payout moves a host's earnings to platform:payouts once per Reference (10007: more than the earnings). "
            "StartPK starts a PK battle between 2-9 live rooms at once (7200006: a room is in a running one)."
        ),
        parameters=SIGNING_PARAMETERS,
        auth=[],
        request=PolymorphicProxySerializer(
            component_name="ServerApiRequest",
            serializers=[
                SendDanmakuGiftsSerializer,
                TopUpSerializer,
                DescribeDanmakuMsgResultsSerializer,
                RefundGiftSerializer,
                ReverseTopUpSerializer,
                PayoutSerializer,
                StartPkSerializer,
            ],
            resource_type_field_name=None,
        ),
        responses={200: ServerApiAnswerSerializer},
        examples=[
            OpenApiExample(
                "SendDanmakuGifts",
                request_only=True,
                value={
                    "RoomId": "room123",
                    "MiniGameId": "TinyLoveWar",
                    "GiftList": [
                        {
                            "UserInfo": {"UserId": "user1", "Nickname": "test1", "Avatar": "http://", "Sex": 1},
                            "GiftInfo": {"GiftId": "g1", "Value": 10, "Num": 2},
                            "Timestamp": 12312312,
                            "ReceiverId": "anchor111",
                            "MsgId": "445623452643416236",
                        }
                    ],
                },
            ),
            OpenApiExample("DescribeDanmakuMsgResults", request_only=True, value={"MsgIdList": ["445623452643416236"]}),
            OpenApiExample(
                "TopUp", request_only=True, value={"UserId": "user1", "Amount": 500, "Reference": "pay-20240101-0001"}
            ),
            OpenApiExample(
                "RefundGift",
                request_only=True,
                value={"MsgId": "445623452643416236", "UserId": "user1", "Reason": "sent by mistake"},
            ),
            OpenApiExample(
                "ReverseTopUp", request_only=True, value={"Reference": "pay-20240101-0001", "Reason": "chargeback"}
            ),
            OpenApiExample(
                "Payout", request_only=True, value={"UserId": "anchor111", "Amount": 5000, "Reference": "bank-77"}
            ),
            OpenApiExample("StartPK", request_only=True, value={"RoomIds": ["room123", "room456"], "DurationS": 300}),
            OpenApiExample(
                "SendDanmakuGifts answer",
                response_only=True,
                value={
                    "Code": 0,
                    "Message": SUCCEED,
                    "RequestId": "9f1c2a7be0d34b51",
                    "Data": {"Results": [{"Result": 0, "Msg": "success", "MsgId": "445623452643416236"}]},
                },
            ),
        ],
    )
    def post(self, request):
        request_id = secrets.token_hex(12)
        try:
            app = request_authenticate(request.query_params)
            action = request.query_params.get("Action", "")
            if action == "SendDanmakuGifts":
                data = self.send_danmaku_gifts(app, json_body(request), request_id)
            elif action == "TopUp":
                data = self.top_up(app, json_body(request))
            elif action == "DescribeDanmakuMsgResults":
                data = self.describe(app, json_body(request))
            elif action == "RefundGift":
                data = self.refund_gift(app, json_body(request))
            elif action == "ReverseTopUp":
                data = self.reverse_top_up(app, json_body(request))
            elif action == "Payout":
                data = self.payout(app, json_body(request))
            elif action == "StartPK":
                data = self.start_pk(app, json_body(request))
            else:
                raise MalformedRequest(f"Action: must be one of {', '.join(ACTIONS)}")
        except BACKEND_UNAVAILABLE as error:
            # Gifts of a batch are each sent on their own and report their own failures, so this
            # is raised before any of them ran (or by a TopUp, which is idempotent on Reference).
            logger.warning("server API %s: backend unavailable: %s: %s", request_id, type(error).__name__, error)
            unavailable = ServiceUnavailable()
            return answer(request_id, unavailable.code, unavailable.message)
        except RequestError as error:
            logger.info(
                "server API refused: %s",
                error.message,
                extra=fields(
                    event="request_refused",
                    api="server",
                    action=request.query_params.get("Action", "")[:40],
                    request_id=request_id,
                    code=error.code,
                ),
            )
            return answer(request_id, error.code, error.message)
        return answer(request_id, 0, SUCCEED, data)

    def send_danmaku_gifts(self, app: ServerApp, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        mini_game_id = body.get("MiniGameId")
        if mini_game_id is not None and (not isinstance(mini_game_id, str) or len(mini_game_id) > 64):
            raise GameIdInvalid("MiniGameId format error: must be a string of at most 64 characters")
        data = validated(SendDanmakuGiftsSerializer, body)
        room_call_admit(data["RoomId"])
        room, session = room_for_gifts(data["RoomId"])
        game_session = game_for_gifts(room, session, data.get("MiniGameId"))

        gifts = []
        for raw, item in zip(body["GiftList"], data["GiftList"], strict=True):
            user, info = item["UserInfo"], item["GiftInfo"]
            gifts.append(
                ServerGift(
                    msg_id=item["MsgId"],
                    user_id=user["UserId"],
                    nickname=user.get("Nickname"),
                    avatar=user.get("Avatar"),
                    sex=user.get("Sex"),
                    gift_code=info["GiftId"],
                    value=info["Value"],
                    num=info["Num"],
                    receiver_code=item.get("ReceiverId") or None,
                    raw_item=raw,
                )
            )
        outcomes = server_gifts_send(app=app, request_id=request_id, room=room, game_session=game_session, gifts=gifts)
        return {
            "Results": [
                {"Result": int(outcome.result), "Msg": outcome.message, "MsgId": outcome.msg_id} for outcome in outcomes
            ]
        }

    def top_up(self, app: ServerApp, body: dict[str, Any]) -> dict[str, Any]:
        data = validated(TopUpSerializer, body)
        try:
            profile, _ = server_topup(
                app=app, user_id=data["UserId"], amount=data["Amount"], reference=data["Reference"]
            )
        except TransferConflict:
            raise MalformedRequest(
                f"Reference: {data['Reference']} was already used for a different UserId or Amount"
            ) from None
        return {"UserId": profile.user_id, "Balance": coins_account(profile).balance}

    def describe(self, app: ServerApp, body: dict[str, Any]) -> dict[str, Any]:
        data = validated(DescribeDanmakuMsgResultsSerializer, body)
        return {"Results": sends_describe(scope=f"app:{app.app_id}", msg_ids=data["MsgIdList"])}

    def refund_gift(self, app: ServerApp, body: dict[str, Any]) -> dict[str, Any]:
        data = validated(RefundGiftSerializer, body)
        outcome = server_gift_refund(
            app=app, user_id=data["UserId"], msg_id=data["MsgId"], reason=data.get("Reason", "")
        )
        refund = outcome.refund
        return {"MsgId": data["MsgId"], "Coins": refund.coins, "Balance": refund.coins_balance}

    def reverse_top_up(self, app: ServerApp, body: dict[str, Any]) -> dict[str, Any]:
        data = validated(ReverseTopUpSerializer, body)
        try:
            reversal = topup_reverse(reference=app_reference(app, data["Reference"]), reason=data.get("Reason", ""))
        except TopUpNotFound:
            raise MalformedRequest(f"Reference: no top-up of this app has the Reference {data['Reference']}") from None
        return {
            "UserId": reversal.profile.user_id,
            "Reference": data["Reference"],
            "Amount": reversal.amount,
            "Taken": reversal.taken,
            "Owed": reversal.owed,
        }

    def payout(self, app: ServerApp, body: dict[str, Any]) -> dict[str, Any]:
        data = validated(PayoutSerializer, body)
        profile = Profile.objects.filter(user_id=data["UserId"]).first()
        if profile is None:
            raise MalformedRequest(f"UserId: no user {data['UserId']}")
        try:
            payout_create(profile=profile, amount=data["Amount"], reference=app_reference(app, data["Reference"]))
        except (TransferConflict, IntegrityError):
            # IntegrityError: another host was paid out under this Reference at the same moment.
            raise MalformedRequest(
                f"Reference: {data['Reference']} was already used for a different UserId or Amount"
            ) from None
        except InsufficientBalance as short:
            raise NotEnoughEarnings(
                f"insufficient earnings: {short.account.balance} coins, {data['Amount']} asked"
            ) from None
        return {
            "UserId": profile.user_id,
            "Reference": data["Reference"],
            "Amount": data["Amount"],
            "Earnings": earnings_account(profile).balance,
        }

    def options(self, request, *args, **kwargs):
        """Not DRF's metadata: a business server gets ZEGO's shape whatever it sends."""
        return answer(secrets.token_hex(12), MalformedRequest.code, "method OPTIONS not allowed; use POST")

    def start_pk(self, app: ServerApp, body: dict[str, Any]) -> dict[str, Any]:
        data = validated(StartPkSerializer, body)
        battle = pk_battle_start(
            room_ids=data["RoomIds"], duration_s=data["DurationS"], source=PkBattle.Source.SERVER, app=app
        )
        return {"PkId": battle.pk, "EndsAt": battle.ends_at.isoformat().replace("+00:00", "Z")}

    def handle_exception(self, exc):
        """Anything DRF refuses before `post` runs (e.g. a GET) still gets a ZEGO-shaped answer."""
        if isinstance(exc, drf.APIException):
            return answer(secrets.token_hex(12), MalformedRequest.code, str(exc.detail))
        return super().handle_exception(exc)
