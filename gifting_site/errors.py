"""Request-level errors of SPEC section 3 and the one place that turns errors into HTTP answers.

Per-gift outcomes (10003-10011) are results, not exceptions: see `gifts.results`.
"""

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import page_not_found
from drf_spectacular.utils import OpenApiResponse, extend_schema_serializer
from redis.exceptions import RedisError
from rest_framework import exceptions as drf
from rest_framework import serializers
from rest_framework.response import Response

from gifting_site.logs import fields

logger = logging.getLogger(__name__)

# What a lost database or Redis connection raises. The request did not complete: a database
# transaction that was cut is rolled back, and a gift retried with its MsgId applies once.
BACKEND_UNAVAILABLE = (OperationalError, InterfaceError, RedisError)
RETRY_AFTER_SECONDS = 1


class RequestError(Exception):
    """A request refused as a whole: nothing was recorded, so every MsgId may be retried as is."""

    code = 7200003
    http_status = 400
    default_message = "malformed request"

    def __init__(self, message: str | None = None):
        self.message = message or self.default_message
        super().__init__(self.message)


class GameNotFound(RequestError):
    code, http_status, default_message = 7202001, 404, "game not found"


class GameIdInvalid(RequestError):
    code, http_status, default_message = 7202002, 400, "MiniGameId format error"


class GameNotStarted(RequestError):
    code, http_status, default_message = 7206001, 409, "game not started"


class AuthenticationFailed(RequestError):
    code, http_status, default_message = 7200001, 401, "authentication failed"


class StaleRequest(RequestError):
    code, http_status, default_message = 7200002, 401, "replayed or stale request"


class MalformedRequest(RequestError):
    code, http_status, default_message = 7200003, 400, "malformed request"


class RoomUnavailable(RequestError):
    code, http_status, default_message = 7200004, 404, "room not found or not live"


class RateLimited(RequestError):
    code, http_status, default_message = 7200005, 429, "rate limited"


class SendNotFound(RequestError):
    code, http_status, default_message = 10010, 404, "no gift was sent with this msg_id"


class NotRoomHost(RequestError):
    """Only a room's host may change it (its co-hosts, its goal)."""

    code, http_status, default_message = 7200001, 403, "only the room's host may do this"


class GiftNotConfigured(RequestError):
    """A gift a request names is unknown or inactive (a goal's gift, for instance)."""

    code, http_status, default_message = 10004, 404, "gift not configured"


class PkConflict(RequestError):
    """A room of a PK battle about to run is already fighting another one (SPEC section 11)."""

    code, http_status, default_message = 7200006, 409, "room already in a running PK battle"


class PkNotFound(RequestError):
    code, http_status, default_message = 7200004, 404, "PK battle not found"


class PkNotPending(RequestError):
    """An answer to a PK invite that is no longer waiting for one (declined, or over)."""

    code, http_status, default_message = 7200003, 409, "the PK battle is not waiting for an answer"


class NotEnoughEarnings(RequestError):
    """A payout of more than the host's earnings hold (SPEC section 10): nothing is paid."""

    code, http_status, default_message = 10007, 422, "insufficient balance"


class ServiceUnavailable(RequestError):
    """The database or Redis could not be reached. SPEC section 3 has no code of its own for
    this, so it answers 10005 (unexpected server error, nothing charged) with HTTP 503."""

    code, http_status = 10005, 503
    default_message = "service temporarily unavailable; nothing was changed, retry as is"


def error_body(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


# --- how refusals are documented in the OpenAPI schema -------------------------------------------


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    """Every refusal, from both viewer APIs: a SPEC section 3 result code and a readable reason."""

    code = serializers.IntegerField(help_text="7200001 auth, 7200003 malformed, 7200004 room, 10003-10011 per gift")
    message = serializers.CharField(help_text="what was refused and why, naming the field")


ERROR_DESCRIPTIONS = {
    400: "malformed request (7200003): the message names the field",
    401: "missing or bad token (7200001)",
    403: "refused: a session without its CSRF token (7200001)",
    404: "not found (7200004 room or person, 7202001 game, 10004 gift or Value tier)",
    409: "MsgId in flight (10006) or reused for a different gift (10008)",
    413: "request body over 1 MiB (7200003)",
    415: "body is not JSON (7200003)",
    422: "refused by a business rule (10003 delivery failed, 10007 insufficient balance, "
    "10009 daily spending limit, 10011 account on hold)",
    429: "rate limited (7200005)",
    503: "database or Redis unavailable, or an unexpected error (10005): nothing changed, retry as is",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    return {
        status: OpenApiResponse(response=ErrorSerializer, description=ERROR_DESCRIPTIONS[status]) for status in statuses
    }


def describe_validation_error(detail: Any, prefix: str = "") -> str:
    """Flatten DRF's nested error detail into `field: reason; field: reason`."""
    if isinstance(detail, dict):
        parts = [describe_validation_error(value, f"{prefix}{key}.") for key, value in detail.items()]
        return "; ".join(parts)
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            field = prefix.rstrip(".") or "body"
            return f"{field}: {' '.join(str(item) for item in detail)}"
        return "; ".join(describe_validation_error(item, prefix) for item in detail)
    field = prefix.rstrip(".") or "body"
    return f"{field}: {detail}"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every refusal becomes `{code, message}` with a SPEC section 3 code.

    Each refusal is logged as one line with its code, so refusals can be counted by kind.
    """
    response = _refusal_response(exc)
    if response is not None:
        request = context.get("request")
        logger.info(
            "request refused: %s",
            response.data.get("message", ""),
            extra=fields(
                event="request_refused",
                api="viewer",
                method=getattr(request, "method", ""),
                path=getattr(request, "path", "")[:200],
                status=response.status_code,
                code=response.data.get("code"),
            ),
        )
    return response


def _refusal_response(exc: Exception) -> Response | None:
    if isinstance(exc, BACKEND_UNAVAILABLE):
        logger.warning("answering 503: %s: %s", type(exc).__name__, exc)
        exc = ServiceUnavailable()
    if isinstance(exc, RequestError):
        response = Response(error_body(exc.code, exc.message), status=exc.http_status)
        if exc.http_status == 503:
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if isinstance(exc, RequestDataTooBig):
        # Django refuses bodies over DATA_UPLOAD_MAX_MEMORY_SIZE while DRF parses them; without
        # this the client would get Django's HTML 400 page instead of a coded answer.
        return Response(error_body(MalformedRequest.code, "request body too large"), status=413)
    if isinstance(exc, SuspiciousOperation):
        return Response(error_body(MalformedRequest.code, "malformed request"), status=400)
    if isinstance(exc, Http404):
        return Response(error_body(RoomUnavailable.code, str(exc) or "not found"), status=404)
    if isinstance(exc, PermissionDenied):
        exc = drf.PermissionDenied()
    if isinstance(exc, drf.Throttled):
        message = "rate limited"
        response = Response(error_body(RateLimited.code, message), status=429)
        if exc.wait is not None:
            response.data["message"] += f"; retry in {exc.wait:.1f} s"
            # Whole seconds (RFC 9110), rounded up so a client that waits exactly this long gets through.
            response["Retry-After"] = str(max(math.ceil(exc.wait), 1))
        return response
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        return Response(error_body(AuthenticationFailed.code, str(exc.detail)), status=exc.status_code)
    if isinstance(exc, drf.PermissionDenied):
        return Response(error_body(AuthenticationFailed.code, str(exc.detail)), status=403)
    if isinstance(exc, drf.NotFound):
        return Response(error_body(RoomUnavailable.code, str(exc.detail)), status=404)
    if isinstance(exc, drf.ValidationError):
        return Response(error_body(MalformedRequest.code, describe_validation_error(exc.detail)), status=400)
    if isinstance(exc, drf.APIException):
        # ParseError, UnsupportedMediaType, MethodNotAllowed, NotAcceptable: all malformed requests.
        return Response(error_body(MalformedRequest.code, str(exc.detail)), status=exc.status_code)
    return None


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 404 handler: API clients get `{code, message}` like every other refusal."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(RoomUnavailable.code, "not found"), status=404)
    return page_not_found(request, exception)


@csrf_exempt  # it changes nothing; a POST with a session cookie must get the JSON 404, not a CSRF page
def api_not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """The last `/api/` route: an unknown API URL is a coded JSON 404, with DEBUG on or off.

    (Django calls `handler404` only with DEBUG off; with it on, its HTML page would answer.)
    """
    return JsonResponse(error_body(RoomUnavailable.code, "not found"), status=404)
