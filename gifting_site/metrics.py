"""Prometheus metrics at `/metrics`, for staff or a scraper holding METRICS_TOKEN.

With several server processes, set PROMETHEUS_MULTIPROC_DIR to an empty directory shared by
every process of the machine (gunicorn and uvicorn workers, the relay): each process writes
its figures there and a scrape of any one of them adds them all up (prometheus-client's
multiprocess mode). Without it each process reports its own figures only.
"""

import hmac
import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

GIFTS = Counter("giftstream_gifts", "Gifts decided by the write path, by result code (0 paid)", ["result"])
SEND_SECONDS = Histogram(
    "giftstream_send_seconds",
    "A REST gift send, from the view's start to its answer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH_GIFTS = Histogram(
    "giftstream_write_batch_gifts", "Gifts per write batch (transaction)", buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500)
)
WEBSOCKETS = Gauge("giftstream_websocket_connections", "Open room websockets", multiprocess_mode="livesum")
WEBSOCKET_MESSAGES = Counter("giftstream_websocket_messages", "Messages sent to room websockets")
MERGE_LAG_SECONDS = Histogram(
    "giftstream_merge_window_lag_seconds",
    "From the commit of a merge window's oldest gift to its gifts message leaving the room hub",
    buckets=(0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0),
)
RELAY_DELAY_SECONDS = Histogram(
    "giftstream_relay_delay_seconds",
    "From a gift's commit to the game vendor taking it",
    buckets=(0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0),
)
FAILED_DELIVERIES = Counter(
    "giftstream_failed_deliveries", "Gifts put in the failed-delivery queue, by source", ["source"]
)


class RelayBacklogCollector:
    """Game deliveries waiting for the relay, read from the database when scraped (one COUNT)."""

    def collect(self):
        from relay.models import GameDelivery

        backlog = GaugeMetricFamily("giftstream_relay_backlog", "Game deliveries pending")
        backlog.add_metric([], GameDelivery.objects.filter(status=GameDelivery.Status.PENDING).count())
        yield backlog


def metrics_text() -> bytes:
    """The exposition of every metric: this process's, or all processes' in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    backlog = CollectorRegistry()
    backlog.register(RelayBacklogCollector())
    return text + generate_latest(backlog)


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse("staff or METRICS_TOKEN only\n", status=403, content_type="text/plain")
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)


def _allowed(request: HttpRequest) -> bool:
    if request.user.is_authenticated and request.user.is_staff:
        return True
    token = settings.METRICS_TOKEN
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return bool(token) and hmac.compare_digest(offered.encode(), token.encode())
