"""The game relay against a local fake vendor: how fast a backlog drains, and how late a live room's gifts arrive.

    python bench/relay.py [--backlog 20000] [--rooms 4] [--rate 200] [--seconds 10] [--relays 1]

Everything runs on PostgreSQL in a database of its own (`bench_relay`), with
`manage.py relay_game_gifts` as separate processes and the fake vendor of the tests
(relay/tests/fake_vendor.py, which checks signatures and keeps first results as ZEGO does)
as another, all on this machine.

1. **Backlog**: BACKLOG paid gifts waiting in ROOMS rooms when the relays start; the time
   until the vendor has them all. Printed beside the vendor's own ceiling for that many
   rooms: 20 calls per second per room x GAME_VENDOR_BATCH gifts per call.
2. **Live room**: one room receives RATE gifts per second for SECONDS, each paid in its
   own transaction, while the relays run. The delay of each gift is the vendor's arrival
   time minus the gift's Timestamp (taken in the gift transaction just before it commits);
   p50 / p99 are printed beside the merge window, which sets the floor.
3. **Quiet room**: QUIET gifts one at a time, a quarter of a second apart, into a room with
   nothing else going on: the delay of a lone gift, which no merge window holds back.
4. **Idle**: nothing pending for IDLE seconds; the relays' CPU and the transactions the
   database served meanwhile (pg_stat_database), per second.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import PYTHON, cpu_seconds, database_drop, database_recreate, machine, percentile, pg_url  # noqa: E402

DATABASE = "bench_relay"
APP_ID, SECRET = "1234567", "bench-vendor-secret"
MERGE_MS = 100


def django_setup() -> None:
    os.environ.update(
        DATABASE_URL=pg_url(DATABASE),
        DJANGO_SETTINGS_MODULE="gifting_site.settings",
        LOG_LEVEL="WARNING",
        # The seeded fans have no avatar of their own, and the vendor requires one.
        GAME_VENDOR_DEFAULT_AVATAR="https://cdn.example.test/default-avatar.png",
    )
    os.environ.pop("REDIS_URL", None)  # the relay publishes `delivery` messages only on failure; none here
    import django

    django.setup()


def seed(rooms: int, senders: int) -> tuple[list, list]:
    """ROOMS live rooms running a relayed game, and SENDERS players who joined every one."""
    from django.core.management import call_command

    from gifts.models import Gift, MiniGame, Room, ValueTier
    from gifts.services import game_join, game_session_open, game_session_start, room_go_live
    from wallets.services import profile_create, topup_create

    call_command("migrate", verbosity=0)
    rose = Gift.objects.create(gift_id="rose", name="Rose", price=1)
    game = MiniGame.objects.create(mini_game_id="BenchGame", name="Bench game", relay=True)
    ValueTier.objects.create(mini_game=game, gift=rose, value=1, effect="petal")
    people = []
    for index in range(senders):
        person = profile_create(user_id=f"fan{index}", nickname=f"Fan {index}")
        topup_create(profile=person, amount=10**9, reference=f"bench-{index}")
        people.append(person)
    room_list = []
    for index in range(rooms):
        room = Room.objects.create(room_id=f"relay-room-{index}", host=profile_create(user_id=f"host{index}"))
        room = room_go_live(room=room)
        game_session_start(session=game_session_open(room=room, mini_game=game))
        for person in people:
            game_join(room=room, profile=person)
        room_list.append(room.room_id)
    return room_list, people


def rose(room, session, sender, msg_id: str):
    """One rose from `sender` in the room's relayed game."""
    from gifts.services import GiftRequest

    return GiftRequest(
        scope="bench",
        msg_id=msg_id,
        sender=sender,
        room=room,
        game_session=session,
        gift_code="rose",
        value=1,
        num=1,
    )


def send(room_id: str, people: list, count: int, *, prefix: str) -> None:
    """Pay `count` gifts in one transaction (one SendDanmakuGifts-sized batch)."""
    from gifts.services import gifts_send, room_for_gifts

    room, session = room_for_gifts(room_id)
    outcomes = gifts_send([rose(room, session, people[n % len(people)], f"{prefix}-{n}") for n in range(count)])
    assert all(outcome.ok for outcome in outcomes), outcomes[0]


SENDER_THREADS = 16
SENDER_ERRORS: list[BaseException] = []


def send_paced(room_id: str, people: list, index: int, rate: int, total: int, began: float) -> None:
    """Gifts index, index + SENDER_THREADS, ... of `total`, each at its moment in an even RATE per second.

    Each goes through `gift_send`, as a REST send does: sends waiting at the same moment share
    one transaction (group commit), which is what lets one room take more gifts per second
    than it can commit transactions.
    """
    from django.db import connection

    from gifts.services import gift_send, room_for_gifts

    room, session = room_for_gifts(room_id)
    for n in range(index, total, SENDER_THREADS):
        lag = began + n / rate - time.monotonic()
        if lag > 0:
            time.sleep(lag)
        try:
            outcome = gift_send(rose(room, session, people[n % len(people)], f"live-{n}"))
            assert outcome.ok, outcome
        except BaseException as error:  # noqa: BLE001 - reported by main()
            SENDER_ERRORS.append(error)
    connection.close()


def database_transactions() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", [DATABASE])
        return cursor.fetchone()[0]


def delays_ms(vendor_url: str, room_id: str) -> list[float]:
    """Commit -> vendor of each of the room's gifts, sorted."""
    from relay.models import GameDelivery

    seen = vendor_stats(vendor_url)["first_seen"]
    msg_ids = GameDelivery.objects.filter(room__room_id=room_id).values_list("vendor_msg_id", flat=True)
    return sorted((seen[msg_id][0] - seen[msg_id][1] / 1000) * 1000 for msg_id in msg_ids)


def pending() -> int:
    from relay.models import GameDelivery

    return GameDelivery.objects.filter(status=GameDelivery.Status.PENDING).count()


def vendor_stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/stats") as response:  # noqa: S310 - our own local fake
        return json.loads(response.read())


def start_relays(count: int, vendor_url: str, batch: int) -> list[subprocess.Popen]:
    env = dict(
        os.environ,
        GAME_VENDOR_URL=vendor_url,
        GAME_VENDOR_APP_ID=APP_ID,
        GAME_VENDOR_SERVER_SECRET=SECRET,
        GAME_VENDOR_MERGE_MS=str(MERGE_MS),
        GAME_VENDOR_BATCH=str(batch),
    )
    return [
        subprocess.Popen([PYTHON, "manage.py", "relay_game_gifts"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        for _ in range(count)
    ]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(10)


def wait_drained(timeout: float) -> float:
    started = time.monotonic()
    while pending():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"relay did not drain within {timeout} s ({pending()} pending)")
        time.sleep(0.02)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--rate", type=int, default=200, help="gifts per second into the live room")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--relays", type=int, default=1)
    parser.add_argument("--batch", type=int, default=50, help="GAME_VENDOR_BATCH")
    parser.add_argument("--quiet", type=int, default=40, help="lone gifts into a quiet room")
    parser.add_argument("--idle", type=int, default=5, help="seconds with nothing to deliver")
    args = parser.parse_args()

    database_recreate(DATABASE)
    vendor = subprocess.Popen(
        [PYTHON, "-m", "relay.tests.fake_vendor", APP_ID, SECRET], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    relays: list[subprocess.Popen] = []
    try:
        vendor_url = vendor.stdout.readline().strip()
        django_setup()
        rooms, people = seed(args.rooms + 2, 20)
        backlog_rooms, live_room, quiet_room = rooms[:-2], rooms[-2], rooms[-1]
        print(machine())
        print(f"relays: {args.relays}, GAME_VENDOR_MERGE_MS={MERGE_MS}, GAME_VENDOR_BATCH={args.batch}\n")

        # 1. a backlog, then the relays start
        per_room = args.backlog // len(backlog_rooms)
        for room_id in backlog_rooms:
            for start in range(0, per_room, 100):
                send(room_id, people, min(100, per_room - start), prefix=f"{room_id}-{start}")
        queued = pending()
        relays = start_relays(args.relays, vendor_url, args.batch)
        seconds = wait_drained(timeout=600)
        calls = vendor_stats(vendor_url)["calls"]
        ceiling = len(backlog_rooms) * 1000 / max(MERGE_MS, 50) * args.batch
        print(f"backlog: {queued} gifts in {len(backlog_rooms)} rooms delivered in {seconds:.1f} s")
        print(f"  {queued / seconds:,.0f} gifts/s in {calls} calls ({queued / calls:.1f} gifts per call)")
        print(f"  the vendor's ceiling at one call per merge window per room: {ceiling:,.0f} gifts/s")

        # 2. a live room at RATE gifts/s, one transaction each (from several threads: a lone
        # sender waits on each commit), relays running
        total = args.rate * args.seconds
        began = time.monotonic()
        threads = [
            threading.Thread(target=send_paced, args=(live_room, people, index, args.rate, total, began))
            for index in range(SENDER_THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        achieved = total / (time.monotonic() - began)
        if SENDER_ERRORS:
            raise SystemExit(f"{len(SENDER_ERRORS)} sends failed, the first: {SENDER_ERRORS[0]!r}")
        wait_drained(timeout=120)
        delays = delays_ms(vendor_url, live_room)
        live_calls = vendor_stats(vendor_url)["calls"] - calls
        print(f"\nlive room: {total} gifts at {achieved:.0f} gifts/s (asked {args.rate}), {live_calls} calls")
        print(
            f"  commit -> vendor: p50 {percentile(delays, 0.5):.0f} ms, p99 {percentile(delays, 0.99):.0f} ms, "
            f"max {delays[-1]:.0f} ms (merge window {MERGE_MS} ms)"
        )

        # 3. lone gifts into a quiet room
        for n in range(args.quiet):
            send(quiet_room, people, 1, prefix=f"quiet-{n}")
            wait_drained(timeout=30)
            time.sleep(0.25)
        delays = delays_ms(vendor_url, quiet_room)
        print(f"\nquiet room: {args.quiet} gifts one at a time")
        print(
            f"  commit -> vendor: p50 {percentile(delays, 0.5):.0f} ms, p99 {percentile(delays, 0.99):.0f} ms, "
            f"max {delays[-1]:.0f} ms"
        )

        # 4. nothing to deliver
        relay_pids = [str(relay.pid) for relay in relays]
        cpu_before = cpu_seconds(relay_pids)
        transactions_before = database_transactions()
        time.sleep(args.idle)
        cpu = cpu_seconds(relay_pids) - cpu_before
        transactions = database_transactions() - transactions_before - 1  # less this reading's own
        print(f"\nidle for {args.idle} s: the relays' CPU {cpu * 1000 / args.idle:.1f} ms/s, ", end="")
        print(f"database transactions {transactions / args.idle:.1f}/s")
    finally:
        stop(relays)
        vendor.terminate()
        from django.db import connections

        connections.close_all()
        database_drop(DATABASE)


if __name__ == "__main__":
    main()
