"""Fixtures shared by every app's tests."""

import pytest
from rest_framework.test import APIClient

from gifts.tests.factories import GiftFactory, RoomFactory
from wallets.tests.factories import ProfileFactory


def pytest_configure(config):
    """No PK clock in the test process: a thread there would end battles behind a test's back.

    Tests end battles by calling pk_battles_end_due, or watch real server processes do it.
    """
    from django.conf import settings

    settings.PK_CLOCK_SECONDS = 0


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
def superuser(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")


@pytest.fixture
def staff_client(client, superuser):
    """A Django test client signed in to the admin as a superuser."""
    client.force_login(superuser)
    return client


@pytest.fixture
def viewer(db):
    return ProfileFactory(user_id="alice", coins=10_000)


@pytest.fixture
def room(db):
    return RoomFactory(room_id="lobby", host=ProfileFactory(user_id="hostess"))


@pytest.fixture
def rose(db):
    return GiftFactory(gift_id="rose", name="Rose", price=10)


@pytest.fixture
async def realtime_reset():
    """After a websocket test: no room hub, channel layer or cached ticket left bound to its event loop.

    Each test runs on a loop of its own, while a server process has one loop and one channel
    layer for its life; a Redis layer keeps locks bound to the loop that made them.
    """
    yield
    from channels.db import database_sync_to_async
    from channels.layers import channel_layers, get_channel_layer
    from django.core.cache import cache
    from django.db import connection

    from gifts.roomhub import room_hub_close

    await room_hub_close()
    layer = get_channel_layer()
    await layer.flush()
    if hasattr(layer, "close_pools"):
        await layer.close_pools()
    channel_layers.backends.clear()
    await database_sync_to_async(cache.clear)()
    # The worker thread keeps its connection; the test database cannot be dropped under it.
    await database_sync_to_async(lambda: connection.close())()
