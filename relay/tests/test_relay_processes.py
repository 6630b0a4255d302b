"""Relays running for real on PostgreSQL: two at once in threads, and a relay process killed mid-call."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from gifts.services import game_join
from gifts.tests.factories import RoomFactory, started_game
from gifts.tests.servers import _postgres_url
from relay.models import GameDelivery
from relay.services import Relay
from wallets.models import Profile
from wallets.tests.factories import ProfileFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: relays in other threads and processes must see the test's committed rows",
    ),
]

ROOT = Path(__file__).resolve().parents[2]


def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def relays_running(count: int, stop: threading.Event) -> list[threading.Thread]:
    """COUNT relays delivering in threads of this process until `stop` is set."""

    def relay_thread():
        try:
            Relay().run(stop)
        finally:
            connection.close()

    threads = [threading.Thread(target=relay_thread) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def all_delivered() -> bool:
    return not GameDelivery.objects.exclude(status="delivered").exists()


def test_two_relays_at_once_serve_each_room_alone_in_order_and_send_each_gift_once(vendor, send, arena, settings):
    settings.GAME_VENDOR_MERGE_MS = 100
    second_room = RoomFactory(room_id="arena2", host=ProfileFactory(user_id="anchor2"))
    started_game(second_room, arena.mini_game)
    for fan in Profile.objects.filter(user_id__in=["fan1", "fan2"]):
        game_join(room=second_room, profile=fan)

    stop = threading.Event()
    relays = relays_running(2, stop)
    try:
        from gifts.services import gifts_send, room_for_gifts
        from gifts.tests.factories import gift_request

        fans = list(Profile.objects.filter(user_id__in=["fan1", "fan2"]).order_by("user_id"))
        for index in range(40):  # about 1.2 s of gifts into both rooms while the relays work
            room, session = room_for_gifts(("arena", "arena2")[index % 2])
            gifts_send(
                [
                    gift_request(fans[n % 2], room, f"c{index}-{n}", gift_code="g1", value=10, session=session)
                    for n in range(1 + index % 3)
                ]
            )
            time.sleep(0.03)
        wait_until(all_delivered)
    finally:
        stop.set()
        for thread in relays:
            thread.join()

    assert vendor.overlaps == []
    for room_id in ("arena", "arena2"):
        calls = [call for call in vendor.calls if call.room_id == room_id]
        sent = [item["MsgId"] for call in calls for item in call.gift_list]
        rows = GameDelivery.objects.filter(room__room_id=room_id).order_by("seq")
        # Each gift went out exactly once, in seq order, across both relays.
        assert sent == [row.vendor_msg_id for row in rows]
        starts = [call.started for call in calls]
        # One call per merge window for the room, whichever relay made it (a little jitter on the fake's clock).
        assert min(later - earlier for earlier, later in zip(starts, starts[1:], strict=False)) >= 0.08
    assert len(vendor.calls) < GameDelivery.objects.count()  # merged


def relay_process(vendor, settings) -> subprocess.Popen:
    config = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": _postgres_url(config, config["NAME"]),
        "GAME_VENDOR_URL": vendor.url,
        "GAME_VENDOR_APP_ID": vendor.app_id,
        "GAME_VENDOR_SERVER_SECRET": vendor.secret,
        "GAME_VENDOR_TIMEOUT_S": str(settings.GAME_VENDOR_TIMEOUT_S),
        "GAME_VENDOR_MERGE_MS": "50",
    }
    env.pop("REDIS_URL", None)
    return subprocess.Popen(
        [sys.executable, "manage.py", "relay_game_gifts"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_relay_killed_mid_call_loses_nothing_and_its_successor_repeats_the_same_call(vendor, send, settings):
    settings.GAME_VENDOR_TIMEOUT_S = 1.0
    send(("fan1", 10, 1), ("fan2", 66, 2))
    vendor.then(delay_s=1.5)  # the vendor takes the gifts but is slow to answer

    first = relay_process(vendor, settings)
    try:
        wait_until(lambda: vendor.in_flight.get("arena"))
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        assert {row.status for row in GameDelivery.objects.all()} == {"pending"}
    finally:
        first.kill()

    successor = relay_process(vendor, settings)
    try:
        wait_until(all_delivered)
        successor.send_signal(signal.SIGTERM)
        output, _ = successor.communicate(timeout=10)
    finally:
        successor.kill()

    assert successor.returncode == 0, output
    assert "game relay stopped" in output
    killed_call, retry = vendor.calls
    assert retry.gift_list == killed_call.gift_list  # the same MsgIds and content
    assert vendor.content_changed == []
    # The vendor gifted each once: the retry got the first results back.
    assert sorted(vendor.delivered_msg_ids()) == sorted(GameDelivery.objects.values_list("vendor_msg_id", flat=True))
