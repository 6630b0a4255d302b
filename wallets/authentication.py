"""How API callers prove who they are."""

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication


class ProfileTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, loading the person's profile in the same query.

    Nearly every authenticated call needs the profile next (sending a gift, the wallet),
    so this saves a database round trip on the hottest path.
    """

    def authenticate_credentials(self, key):
        token = self.get_model().objects.select_related("user__profile").filter(key=key).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return token.user, token
