"""Kill the run's own Redis while gifts are being sent, then start it again (empty, as after a crash).

What the code promises: the gift transaction never touches Redis and the broadcast runs after
commit with `robust=True`, so the database stays the source of truth and a send should still be
acknowledged while Redis is down (or refused with a clear code, moving nothing; a bare 500 is a
bug). The room hub notices the lost channel layer, rejoins its rooms once Redis is back and
reads what it missed from the database, so connected viewers get every event in order.
"""

import asyncio

from faults.harness import (
    FaultRun,
    GiftLoad,
    Report,
    Viewer,
    failed_answers_check,
    gifts_check,
    ledger_check,
    viewers_check,
)

NAME = "redis-outage"


async def scenario(run: FaultRun, report: Report, *, clients: int, seconds: float) -> None:
    viewers = [Viewer(run.port, room) for room in run.seed["rooms"]]
    for viewer in viewers:
        viewer.start()
    await asyncio.wait_for(asyncio.gather(*(viewer.connected.wait() for viewer in viewers)), 15)

    load = GiftLoad(run.port, run.seed, clients=clients, tag="redis")
    load.phase = "before"
    load.start()
    await asyncio.sleep(seconds)
    run.redis.kill()
    load.phase = "redis-down"
    await asyncio.sleep(seconds + 1)
    await asyncio.to_thread(run.redis.start)
    load.phase = "redis-back"
    await asyncio.sleep(seconds)
    await load.stop()

    during = [answer for answer in load.answers if answer.phase == "redis-down"]
    acknowledged = sum(1 for answer in during if answer.acknowledged)
    clear_503 = sum(1 for answer in during if answer.status == 503 and answer.code is not None)
    report.check(
        "while Redis was down every send was acknowledged or refused with a clear 503",
        bool(during) and acknowledged + clear_503 == len(during),
        f"{acknowledged} acknowledged and {clear_503} coded 503s of {len(during)} attempts while Redis was down "
        f"{dict(load.statuses('redis-down'))}; before {dict(load.statuses('before'))}, "
        f"after {dict(load.statuses('redis-back'))}",
    )
    failed_answers_check(report, load, allowed_5xx=(503,), name="refusals are clear (JSON code, 503 at worst)")
    ledger_check(report, run)
    events = gifts_check(report, run, load)
    await viewers_check(report, viewers, events, timeout=20)
    for viewer in viewers:
        await viewer.stop()


def run(report: Report, *, clients: int, seconds: float) -> None:
    with FaultRun(NAME, report) as world:
        asyncio.run(scenario(world, report, clients=clients, seconds=seconds))
