"""Deliver relayed games' paid gifts to the game vendor until SIGTERM (or once, with --once)."""

import signal
import threading

from django.core.management.base import BaseCommand

from engagement.clock import pk_clock_start
from relay.services import Relay


class Command(BaseCommand):
    help = (
        "Relay paid gifts of relayed mini-games to the game vendor (SendDanmakuGifts), merged per room. "
        "Any number may run; each room is served by one at a time."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="deliver what is due now, then exit")

    def handle(self, *args, once: bool = False, **options):
        relay = Relay()
        if once:
            calls = relay.deliver_once()
            self.stdout.write(f"{calls} call(s) to the game vendor")
            return
        stop = threading.Event()

        def request_stop(signum, frame):
            # The call in flight finishes and its answer is recorded; then the loop ends.
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        # A relay process also ends PK battles on time, as every server process does (engagement.clock).
        pk_clock_start()
        self.stdout.write(f"game relay {relay.owner} running; SIGTERM stops it")
        relay.run(stop)
        self.stdout.write("game relay stopped")
