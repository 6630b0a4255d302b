"""/metrics as a Prometheus scraper and staff read it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "scrape-token-123"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return samples(response.content.decode())


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN


@pytest.mark.django_db
def test_metrics_need_the_token_or_a_staff_session(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    client.force_login(get_user_model().objects.create_user("staffer", password="pw", is_staff=True))
    assert client.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_gifts_by_result_batch_sizes_send_latency_and_failed_deliveries_are_counted(
    token, client, client_for, viewer, room, rose
):
    before = scrape(client)
    sender = client_for(viewer)
    paid = sender.post(f"/api/rooms/{room.room_id}/gifts/", {"gift_id": "rose", "msg_id": "a"}, format="json")
    assert paid.status_code == 201
    refused = sender.post(
        f"/api/rooms/{room.room_id}/gifts/", {"gift_id": "rose", "msg_id": "b", "num": 99_999}, format="json"
    )
    assert refused.status_code == 422

    after = scrape(client)

    def grew(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("giftstream_gifts_total", result="0") == 1
    assert grew("giftstream_gifts_total", result="10007") == 1
    assert grew("giftstream_failed_deliveries_total", source="viewer") == 1
    assert grew("giftstream_write_batch_gifts_count") == 2
    assert grew("giftstream_send_seconds_count") == 2
    assert after[("giftstream_relay_backlog", ())] == 0


def test_several_processes_add_up_in_multiprocess_mode(tmp_path):
    """Two processes count gifts; a third, scraping, reports their sum."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/db"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    count = "from gifting_site import metrics; metrics.GIFTS.labels(result='0').inc(3)"
    for _ in range(2):
        subprocess.run([sys.executable, "manage.py", "shell", "-c", count], cwd=ROOT, env=env, check=True)
    scraped = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from gifting_site import metrics; print(metrics.metrics_text().decode())",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    exposition = scraped[scraped.index("# HELP") :]  # after what `shell` itself prints
    assert samples(exposition)[("giftstream_gifts_total", (("result", "0"),))] == 6
