import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from wallets.tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_token_identifies_its_owner():
    alice = ProfileFactory(user_id="alice", coins=300)
    token = Token.objects.create(user=alice.login)

    response = token_client(token.key).get("/api/me/")

    assert response.status_code == 200
    assert response.json()["user_id"] == "alice"
    assert response.json()["coins"] == 300


def test_an_unknown_token_is_refused_with_7200001():
    response = token_client("0" * 40).get("/api/me/")

    assert response.status_code == 401
    assert response.json()["code"] == 7200001


def test_the_token_of_a_deactivated_user_is_refused():
    alice = ProfileFactory(user_id="alice")
    token = Token.objects.create(user=alice.login)
    alice.login.is_active = False
    alice.login.save()

    response = token_client(token.key).get("/api/me/")

    assert response.status_code == 401
    assert response.json()["code"] == 7200001
