"""Viewer REST API for identity and money (SPEC section 4)."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from gifting_site.errors import AuthenticationFailed, MalformedRequest
from gifting_site.fields import StrictCharField
from wallets import selectors
from wallets.services import profile_for_user


class TokenObtainApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    class InputSerializer(serializers.Serializer):
        username = StrictCharField(max_length=150)
        password = StrictCharField(max_length=128, trim_whitespace=False)

    @extend_schema(request=InputSerializer, responses=inline_serializer("Token", {"token": serializers.CharField()}))
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request, **serializer.validated_data)
        if user is None or not user.is_active:
            raise AuthenticationFailed("wrong username or password")
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


class MeApi(APIView):
    class OutputSerializer(serializers.Serializer):
        user_id = serializers.CharField()
        nickname = serializers.CharField()
        avatar = serializers.CharField()
        sex = serializers.IntegerField()
        coins = serializers.IntegerField()
        earnings = serializers.IntegerField()

    @extend_schema(responses=OutputSerializer)
    def get(self, request):
        profile = profile_for_user(request.user)
        return Response(
            {
                "user_id": profile.user_id,
                "nickname": profile.display_name,
                "avatar": profile.avatar,
                "sex": profile.sex,
                **selectors.profile_balances(profile),
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

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        account = serializers.CharField(source="account.kind")
        amount = serializers.IntegerField()
        balance_after = serializers.IntegerField()
        kind = serializers.CharField(source="transfer.kind")
        reference = serializers.CharField(source="transfer.reference")
        memo = serializers.CharField(source="transfer.memo")
        created_at = serializers.DateTimeField()

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        paginator = EntryPagination()
        page = paginator.paginate_queryset(
            selectors.profile_entries(profile_for_user(request.user)), request, view=self
        )
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)
