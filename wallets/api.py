"""Viewer REST API for identity and money (SPEC section 4)."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from gifting_site.errors import AuthenticationFailed, MalformedRequest, error_responses
from gifting_site.fields import StrictCharField
from wallets import selectors
from wallets.services import profile_for_user


class TokenObtainApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema_serializer(component_name="TokenRequest")
    class InputSerializer(serializers.Serializer):
        username = StrictCharField(min_length=1, max_length=150)
        password = StrictCharField(min_length=1, max_length=128, trim_whitespace=False)

    @extend_schema(
        request=InputSerializer,
        responses={
            200: inline_serializer("Token", {"token": serializers.CharField()}),
            **error_responses(400, 401, 413, 415, 503),
        },
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request, **serializer.validated_data)
        if user is None or not user.is_active:
            raise AuthenticationFailed("wrong username or password")
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


class MeApi(APIView):
    @extend_schema_serializer(component_name="Me")
    class OutputSerializer(serializers.Serializer):
        user_id = serializers.CharField()
        nickname = serializers.CharField()
        avatar = serializers.CharField(allow_blank=True)
        sex = serializers.IntegerField(help_text="0 unknown, 1 male, 2 female")
        coins = serializers.IntegerField(help_text="spendable")
        earnings = serializers.IntegerField(help_text="income as a host, not spendable as coins")
        owed = serializers.IntegerField(
            help_text="coins owed for a reversed top-up: while above 0 no gift can be sent (10011); a top-up pays it"
        )

    @extend_schema(responses={200: OutputSerializer, **error_responses(401, 503)})
    def get(self, request):
        profile = profile_for_user(request.user)
        return Response(
            {
                "user_id": profile.user_id,
                "nickname": profile.display_name,
                "avatar": profile.avatar,
                "sex": profile.sex,
                **selectors.profile_balances(profile),
                "owed": selectors.profile_owed(profile),
            }
        )


class EntryPagination(CursorPagination):
    ordering = "-id"
    page_size = 50

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise MalformedRequest("cursor: invalid cursor") from None


class EntryListApi(APIView):
    """The caller's own ledger lines, newest first, with an opaque `cursor` for the next page."""

    @extend_schema_serializer(component_name="LedgerEntry")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        account = serializers.CharField(source="account.kind", help_text="coins, earnings or receivable (owed)")
        amount = serializers.IntegerField()
        balance_after = serializers.IntegerField()
        kind = serializers.CharField(
            source="transfer.kind", help_text="top_up, gift, grant, refund, payout, chargeback or repayment"
        )
        reference = serializers.CharField(source="transfer.reference")
        memo = serializers.CharField(source="transfer.memo", allow_blank=True)
        created_at = serializers.DateTimeField()

    PageSerializer = inline_serializer(
        "LedgerEntryPage",
        {
            "next": serializers.URLField(allow_null=True, help_text="the next (older) page, null on the last one"),
            "previous": serializers.URLField(allow_null=True),
            "results": OutputSerializer(many=True),
        },
    )

    @extend_schema(
        parameters=[OpenApiParameter("cursor", str, OpenApiParameter.QUERY, description="from `next` or `previous`")],
        responses={200: PageSerializer, **error_responses(400, 401, 503)},
    )
    def get(self, request):
        paginator = EntryPagination()
        page = paginator.paginate_queryset(
            selectors.profile_entries(profile_for_user(request.user)), request, view=self
        )
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)
