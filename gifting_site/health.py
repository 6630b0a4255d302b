"""Liveness for load balancers and proxies: the process answers HTTP, nothing more.

It reads no database, cache or session, so a probe every second costs a worker almost
nothing, and a database outage (which the API reports itself with 503) does not take every
server out of rotation at once.
"""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView


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
