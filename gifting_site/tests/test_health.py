"""The liveness probe a proxy or load balancer polls."""

import json

import pytest


@pytest.mark.django_db
def test_health_answers_ok_without_touching_the_database(api_client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = api_client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_is_documented_in_the_openapi_schema(api_client, db):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert schema["paths"]["/healthz"]["get"]["operationId"] == "health"


@pytest.mark.parametrize("debug", [True, False])
def test_an_unknown_api_url_is_a_coded_json_404_with_debug_on_or_off(client, settings, db, debug):
    settings.DEBUG = debug
    for url in ("/api/nope/", "/api/rooms/room1/nope/", "/api/v2/"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] == 7200004
    # Without the slash: redirected to the slashed form, which answers the same way.
    assert client.get("/api/nope", follow=True).json()["code"] == 7200004
    assert client.get("/api/gifts").status_code == 301


@pytest.mark.django_db
def test_ready_answers_ok_when_the_database_and_cache_answer(api_client, settings):
    response = api_client.get("/readyz")
    assert response.status_code == 200
    expected_redis = "ok" if settings.REDIS_URL else "off"
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": expected_redis}}


@pytest.mark.django_db
def test_ready_is_503_naming_redis_when_redis_is_unreachable(api_client, settings):
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{closed.getsockname()[1]}/0"
    settings.REDIS_URL = url
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    response = api_client.get("/readyz")  # Django's test signals swap the cache for the changed CACHES
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == 10005 and "redis unreachable" in body["message"]
    assert body["checks"] == {"database": "ok", "redis": "unreachable (ConnectionError)"}


@pytest.mark.django_db
def test_an_unknown_api_url_posted_with_a_session_cookie_is_still_a_json_404(viewer):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(viewer.login)
    response = client.post("/api/rooms/%0Cv/game/join/")  # a room id no room can have
    assert response.status_code == 404 and response.json()["code"] == 7200004


def test_ready_is_503_naming_the_database_on_a_live_server_whose_database_is_down(tmp_path):
    """A real server process whose PostgreSQL does not answer: alive, and not ready."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request
    from pathlib import Path

    from gifts.tests.servers import free_port

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_database = f"postgres://postgres@127.0.0.1:{closed.getsockname()[1]}/nowhere"
    port = free_port()
    env = {**os.environ, "DATABASE_URL": dead_database, "LOG_LEVEL": "ERROR"}
    env.pop("REDIS_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "gifting_site.asgi:application", "--port", str(port), "--log-level", "error"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as alive:
                    assert alive.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10)
            status, body = 200, {}
        except urllib.error.HTTPError as not_ready:
            status, body = not_ready.code, json.loads(not_ready.read())
    finally:
        server.terminate()
        server.wait(10)
    assert status == 503
    assert body["checks"]["database"] == "unreachable (OperationalError)" and body["code"] == 10005
