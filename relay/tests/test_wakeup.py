"""Relays are woken by the commits that give them work, instead of reading the outbox many times a second."""

import socket
import threading

import pytest
from django.db import connection, connections, transaction

from relay import services, wakeup
from relay.models import GameDelivery
from relay.tests.test_relay_processes import all_delivered, relays_running, wait_until

# Far longer than any test waits for a delivery: only a wake gets a gift out in time.
LONG_POLL_S = 60.0


def start_waiting(listener: wakeup.Listener, stop: threading.Event) -> threading.Event:
    woke = threading.Event()

    def wait():
        listener.wait(LONG_POLL_S, stop)
        woke.set()

    threading.Thread(target=wait, daemon=True).start()
    return woke


@pytest.mark.django_db(transaction=True)
def test_a_listener_wakes_when_deliveries_are_committed_and_not_when_they_are_rolled_back():
    listener = wakeup.Listener()
    stop = threading.Event()
    try:
        woke = start_waiting(listener, stop)
        with pytest.raises(RuntimeError), transaction.atomic():
            wakeup.relays_wake()
            raise RuntimeError("the gift batch failed")
        assert not woke.wait(0.5)

        with transaction.atomic():
            wakeup.relays_wake()
            assert not woke.wait(0.2)  # not before the commit: the relay would find nothing yet
        assert woke.wait(10)
    finally:
        listener.close()


@pytest.mark.django_db(transaction=True)
def test_every_listener_of_a_process_is_woken():
    listeners = [wakeup.Listener(), wakeup.Listener()]
    stop = threading.Event()
    try:
        woken = [start_waiting(listener, stop) for listener in listeners]
        with transaction.atomic():
            wakeup.relays_wake()
        assert all(woke.wait(10) for woke in woken)
    finally:
        for listener in listeners:
            listener.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL: the relay's thread must see the test's commits"
)
def test_a_waiting_relay_sends_a_gift_when_it_commits_rather_than_a_poll_later(vendor, send, monkeypatch):
    monkeypatch.setattr(services, "IDLE_POLL_S", LONG_POLL_S)
    waiting = threading.Event()
    original_wait = wakeup.Listener.wait

    def observed_wait(self, timeout, stop):
        waiting.set()
        original_wait(self, timeout, stop)

    monkeypatch.setattr(wakeup.Listener, "wait", observed_wait)
    stop = threading.Event()
    [thread] = relays_running(1, stop)
    try:
        assert waiting.wait(10)  # its first pass found nothing: it waits out its long poll
        [outcome] = send(("fan1", 10, 1))
        assert outcome.ok
        wait_until(all_delivered, timeout=20)
        assert GameDelivery.objects.get().status == GameDelivery.Status.DELIVERED
        assert [item["GiftInfo"]["Value"] for call in vendor.calls for item in call.gift_list] == [10]
    finally:
        stop.set()
        wakeup.relays_wake()  # so that it notices the stop now, not a long poll later
        thread.join()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the listening connection is PostgreSQL's")
def test_a_listener_that_cannot_reach_the_database_says_so_once_and_listens_again_when_it_can(monkeypatch, caplog):
    reachable = connections["default"].get_connection_params
    monkeypatch.setattr(connections["default"], "get_connection_params", lambda: {**reachable(), "port": unused_port()})
    listener = wakeup.Listener()
    stop = threading.Event()
    try:
        for _ in range(3):
            listener.wait(0.01, stop)  # waits out the poll interval, as a relay then does
        assert len([record for record in caplog.records if record.levelname == "WARNING"]) == 1

        monkeypatch.setattr(connections["default"], "get_connection_params", reachable)
        listener.wait(0.01, stop)  # connects and listens again
        assert "listening for new gifts again" in caplog.text
        woke = start_waiting(listener, stop)
        wakeup.relays_wake()
        assert woke.wait(10)
    finally:
        listener.close()


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
