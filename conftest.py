"""Fixtures shared by every app's tests."""

import pytest
from rest_framework.test import APIClient

from gifts.tests.factories import GiftFactory, RoomFactory
from wallets.tests.factories import ProfileFactory


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Tests make many people with passwords; the production hasher is slow on purpose."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def client_for():
    """An API client signed in as the given profile (token auth, as a mobile app would be)."""
    from rest_framework.authtoken.models import Token

    def make(profile) -> APIClient:
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=profile.login)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def viewer(db):
    return ProfileFactory(user_id="alice", coins=10_000)


@pytest.fixture
def room(db):
    return RoomFactory(room_id="lobby", host=ProfileFactory(user_id="hostess"))


@pytest.fixture
def rose(db):
    return GiftFactory(gift_id="rose", name="Rose", price=10)
