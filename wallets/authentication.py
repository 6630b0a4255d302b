"""How API callers prove who they are."""

from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from wallets.models import Profile

User = get_user_model()

# In the models' field order, which Model.from_db expects.
USER_FIELDS = ("id", "username", "is_active")
PROFILE_FIELDS = ("id", "login_id", "user_id", "nickname", "avatar", "sex")


class ProfileTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, loading the person and their profile in one plain query.

    Every gift is sent with a token and needs the profile next. The ORM's three-table join
    cost more CPU to build than the rest of the request's reads together, so this reads only
    the columns the API uses; any other field of the user loads on first access, as with
    `QuerySet.only()`.
    """

    def authenticate_credentials(self, key):
        row = _token_owner(key)
        if row is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        user = User.from_db(connection.alias, USER_FIELDS, row[: len(USER_FIELDS)])
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        profile_row = row[len(USER_FIELDS) :]
        if profile_row[0] is not None:
            profile = Profile.from_db(connection.alias, PROFILE_FIELDS, profile_row)
            user.profile = profile  # profile_for_user then needs no query
        token = Token.from_db(connection.alias, ("key", "user_id"), (key, user.pk))
        return user, token


def _token_owner(key: str) -> tuple | None:
    user_columns = ", ".join(f"u.{field}" for field in USER_FIELDS)
    profile_columns = ", ".join(f"p.{field}" for field in PROFILE_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {user_columns}, {profile_columns} FROM {Token._meta.db_table} t "
            f"JOIN {User._meta.db_table} u ON u.id = t.user_id "
            f"LEFT JOIN {Profile._meta.db_table} p ON p.login_id = u.id WHERE t.key = %s",
            [key],
        )
        return cursor.fetchone()
