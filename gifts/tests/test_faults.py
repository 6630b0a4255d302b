"""Faults small enough for the suite: Redis gone, a PostgreSQL connection cut in the middle of a gift.

The long versions, under load with a real server, are in bench/faults/.
"""

import socket
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection
from rest_framework.test import APIClient

from gifts.models import GiftEvent, ServerApp
from gifts.tests.test_server_api import signed_url
from wallets.models import Transfer
from wallets.selectors import ledger_totals, profile_balances, user_balances_match_entries


def closed_port() -> int:
    """A local port nobody listens on: connecting to it is refused at once, as to a Redis that died."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def send(client: APIClient, room, msg_id: str):
    return client.post(f"/api/rooms/{room.room_id}/gifts/", {"gift_id": "rose", "msg_id": msg_id}, format="json")


def ledger_is_balanced() -> bool:
    totals = ledger_totals()
    return (
        totals["sum_of_balances"] == 0
        and totals["sum_of_entries"] == 0
        and totals["negative_user_accounts"] == 0
        and user_balances_match_entries()
    )


# --- Redis down ---------------------------------------------------------------------------------


@pytest.fixture
def redis_down_for_broadcasts(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{closed_port()}/0"]},
        }
    }


@pytest.mark.django_db(transaction=True)
def test_a_gift_is_paid_and_acknowledged_while_the_channel_layer_is_down(
    redis_down_for_broadcasts, viewer, room, rose, client_for
):
    # Given a channel layer whose Redis refuses connections
    # When the viewer sends a gift
    response = send(client_for(viewer), room, "while-redis-is-down")

    # Then the gift is acknowledged and paid: the database, not the broadcast, is the source of truth
    assert response.status_code == 201, response.content
    assert response.json()["event"]["seq"] == 1
    assert profile_balances(viewer)["coins"] == 10_000 - 10
    assert GiftEvent.objects.filter(msg_id="while-redis-is-down").count() == 1
    assert ledger_is_balanced()


@pytest.fixture
def cache_down(settings):
    """The shared cache (throttles, nonces, per-room counters, tickets) on a Redis that refuses connections."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
        }
    }


@pytest.mark.django_db(transaction=True)
def test_a_send_while_the_cache_is_down_is_still_sent_and_paid(cache_down, viewer, room, rose):
    # Given a cache (throttle counters) whose Redis refuses connections
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(viewer.login)

    # When the viewer sends a gift
    response = send(client, room, "while-the-cache-is-down")

    # Then the throttle, unable to count, lets it through: the gift is sent and paid once
    assert response.status_code == 201, response.content
    assert profile_balances(viewer)["coins"] == 10_000 - 10
    assert ledger_is_balanced()


@pytest.mark.django_db
def test_the_server_api_refuses_with_a_retryable_code_while_it_cannot_check_nonces(cache_down, client, room):
    # Given a business server's app, and a cache that cannot remember nonces
    ServerApp.objects.create(app_id="1000001", secret="demo-secret")
    body = {
        "RoomId": room.room_id,
        "GiftList": [{"UserInfo": {"UserId": "fan"}, "GiftInfo": {"GiftId": "rose", "Num": 1}, "MsgId": "m1"}],
    }

    # When it sends a signed batch
    response = client.post(signed_url(), body, content_type="application/json")

    # Then the answer is ZEGO-shaped with a retryable code, and nothing was recorded
    assert response.status_code == 200
    assert response.json()["Code"] == 10005
    assert not GiftEvent.objects.exists()
    assert ledger_is_balanced()


@pytest.mark.django_db
def test_a_websocket_ticket_while_the_cache_is_down_is_a_coded_503(cache_down, viewer, client_for):
    response = client_for(viewer).post("/api/ws-ticket/")

    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json()["code"] == 10005


# --- PostgreSQL connection cut mid-transaction --------------------------------------------------

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="terminates a PostgreSQL backend with pg_terminate_backend"
)


class BackendKiller:
    """A Django execute wrapper: before the first query containing `marker`, the server ends our backend.

    The termination comes from a second, independent connection, exactly as an administrator, a
    failover or a network cut would end it: the query then fails on a dead connection.
    """

    def __init__(self, marker: str):
        self.marker = marker
        self.fired = False

    def __call__(self, execute, sql, params, many, context):
        if not self.fired and self.marker in sql:
            self.fired = True
            victim = connection.connection.info.backend_pid
            settings = connection.settings_dict
            with psycopg.connect(
                host=settings["HOST"] or None,
                port=settings["PORT"] or None,
                user=settings["USER"] or None,
                password=settings["PASSWORD"] or None,
                dbname=settings["NAME"],
                autocommit=True,
            ) as admin:
                # With a timeout, pg_terminate_backend returns once the backend has exited.
                admin.execute("SELECT pg_terminate_backend(%s, 5000)", [victim])
        return execute(sql, params, many, context)


@contextmanager
def connection_killed_before(marker: str):
    killer = BackendKiller(marker)
    with connection.execute_wrapper(killer):
        yield killer
    # A server drops a broken connection when the request ends; the test client skips that signal.
    connection.close_if_unusable_or_obsolete()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_gift_whose_connection_dies_after_the_transfer_is_rolled_back_and_its_retry_applies_once(
    viewer, room, rose, client_for
):
    client = client_for(viewer)

    # Given the transfer is written, when the connection dies just before the gift event is inserted
    with connection_killed_before(f"INSERT INTO {GiftEvent._meta.db_table} ") as killer:
        response = send(client, room, "cut-mid-gift")

    # Then the viewer gets a coded 503 and nothing of the gift remains
    assert killer.fired
    assert response.status_code == 503
    assert response.json()["code"] == 10005
    assert profile_balances(viewer)["coins"] == 10_000
    assert not Transfer.objects.filter(kind=Transfer.Kind.GIFT).exists()
    assert not GiftEvent.objects.exists()
    assert ledger_is_balanced()

    # When the app retries the same MsgId
    retry = send(client, room, "cut-mid-gift")
    again = send(client, room, "cut-mid-gift")

    # Then the gift is applied once, and the second retry is its replay
    assert (retry.status_code, again.status_code) == (201, 200)
    assert retry.json()["event"]["seq"] == again.json()["event"]["seq"] == 1
    assert profile_balances(viewer)["coins"] == 10_000 - 10
    assert Transfer.objects.filter(kind=Transfer.Kind.GIFT).count() == 1
    assert ledger_is_balanced()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_connection_that_dies_before_the_gift_starts_answers_a_coded_5xx(viewer, room, rose):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(viewer.login)

    # When the connection dies as the view looks the room up
    with connection_killed_before(f"FROM {room._meta.db_table} ") as killer:
        response = send(client, room, "cut-before-gift")

    # Then the answer is a coded 503 asking for a retry, and nothing was charged
    assert killer.fired
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json()["code"] == 10005
    assert profile_balances(viewer)["coins"] == 10_000
