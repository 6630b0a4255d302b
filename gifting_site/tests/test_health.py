"""The liveness probe a proxy or load balancer polls."""

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
