"""CPU of the batched write path alone, in one process: `python bench/batch_cpu.py [BATCHES] [SIZE] [--goal]`.

Creates a fresh benchmark database (gs_bench_batch_cpu), then writes BATCHES batches
(default 200) of SIZE gifts (default 50, a SendDanmakuGifts GiftList), one per sender, to
one room through `gifts.services.gifts_send`: no HTTP, no server, no other load. Prints the
CPU and wall time per gift. With `--goal` the room has a goal (engagement.models.Goal) that
every gift counts towards. Run it on two trees one right after the other to compare the
write path's own cost; HTTP-level throughput is bench/throughput.py's job.
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, database_drop, database_recreate, machine, pg_url  # noqa: E402

DATABASE = "gs_bench_batch_cpu"
WARM_UP_BATCHES = 20


def main(batches: int, size: int, goal: bool) -> None:
    database_recreate(DATABASE)
    os.environ.update(
        DATABASE_URL=pg_url(DATABASE), LOG_LEVEL="WARNING", DJANGO_SETTINGS_MODULE="gifting_site.settings"
    )
    os.environ.pop("REDIS_URL", None)  # the broadcast after commit goes to the in-memory layer
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from gifts.services import gifts_send
    from gifts.tests.factories import GiftFactory, RoomFactory, gift_request
    from wallets.tests.factories import ProfileFactory

    call_command("migrate", verbosity=0)
    GiftFactory(gift_id="rose", price=1)
    room = RoomFactory(room_id="batch-cpu")
    if goal:
        from engagement.services import room_goal_set

        room_goal_set(room=room, by=room.host, title="bench", target=10**12)
    senders = [ProfileFactory(user_id=f"batch{index}", coins=10**9) for index in range(size)]
    sent = iter(range(10**9))

    def batch() -> None:
        outcomes = gifts_send([gift_request(sender, room, f"m{next(sent)}") for sender in senders])
        assert all(outcome.ok for outcome in outcomes), outcomes

    for _ in range(WARM_UP_BATCHES):  # imports, connections, caches
        batch()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        batch()
    gifts = batches * size
    cpu_ms, wall_ms = (time.process_time() - cpu) * 1000 / gifts, (time.perf_counter() - wall) * 1000 / gifts
    print(f"machine: {machine()}")
    to = " to a room with a goal" if goal else ""
    print(f"{batches} batches of {size} gifts{to}: CPU {cpu_ms:.3f} ms per gift, wall {wall_ms:.3f} ms per gift")
    from django.db import connections

    connections.close_all()
    database_drop(DATABASE)


if __name__ == "__main__":
    arguments = [argument for argument in sys.argv[1:] if argument != "--goal"]
    main(
        int(arguments[0]) if arguments else 200,
        int(arguments[1]) if len(arguments) > 1 else 50,
        goal="--goal" in sys.argv[1:],
    )
