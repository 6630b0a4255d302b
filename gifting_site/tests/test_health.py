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
