"""Probes for load balancers, proxies and orchestrators.

`/healthz` (liveness) reads no database, cache or session, so a probe every second costs a
worker almost nothing, and a database outage (which the API reports itself with 503) does
not take every server out of rotation at once. `/readyz` (readiness) asks the database and,
when one is configured, Redis for one round trip each, and says which failed.
"""

import logging

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from gifting_site.cache import cache_ping
from gifting_site.errors import ServiceUnavailable, error_responses
from gifts import writer

logger = logging.getLogger(__name__)


class HealthApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        operation_id="health",
        summary="Liveness: the server process answers",
        auth=[],
        responses={200: inline_serializer("Health", {"status": serializers.CharField(help_text='always "ok"')})},
    )
    def get(self, request):
        return Response({"status": "ok"})


class ReadyApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        operation_id="ready",
        summary="Readiness: the database and Redis (when configured) answer",
        auth=[],
        responses={
            200: inline_serializer(
                "Ready",
                {
                    "status": serializers.CharField(help_text='"ready"'),
                    "checks": serializers.DictField(child=serializers.CharField(), help_text="ok per dependency"),
                },
            ),
            **error_responses(503),
        },
    )
    def get(self, request):
        checks = {
            "database": _probe(writer.database_ping),
            "redis": _probe(cache_ping) if _redis_configured() else "off",
        }
        failed = [name for name, state in checks.items() if state not in ("ok", "off")]
        if failed:
            message = "not ready: " + "; ".join(f"{name} {checks[name]}" for name in failed)
            return Response({"code": ServiceUnavailable.code, "message": message, "checks": checks}, status=503)
        return Response({"status": "ready", "checks": checks})


def _redis_configured() -> bool:
    return bool(settings.REDIS_URL)


def _probe(ping) -> str:
    try:
        return "ok" if ping() else "unexpected answer"
    except Exception as error:  # any failure is the answer here
        logger.warning("readiness probe failed: %s: %s", type(error).__name__, error)
        return f"unreachable ({type(error).__name__})"
