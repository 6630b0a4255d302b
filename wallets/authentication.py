"""How API callers prove who they are."""

from django.db import connection
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from gifts import writer


class ProfileTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, loading the person and their profile in one plain query
    (`gifts.writer.token_owner`)."""

    def authenticate_credentials(self, key):
        owner = writer.token_owner(key)
        if owner is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        user, profile = owner
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        if profile is not None:
            user.profile = profile  # profile_for_user then needs no query
        token = Token.from_db(connection.alias, ("key", "user_id"), (key, user.pk))
        return user, token
