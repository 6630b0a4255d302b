"""Kill the run's own Redis while gifts are being sent, then start it again (empty, as after a crash).

What the code promises: the gift transaction never touches Redis and the broadcast runs after
commit with `robust=True`, so the database stays the source of truth and a send should still be
acknowledged while Redis is down (or refused with a clear code, moving nothing; a bare 500 is a
bug). The room hub notices the lost channel layer, rejoins its rooms once Redis is back and
reads what it missed from the database, so connected viewers get every event in order.
"""

import asyncio

from common import http_get_status

from faults.harness import (
    FaultRun,
    GiftLoad,
    Report,
    closing_checks,
    failed_answers_check,
    stored_events,
    viewers_check,
    viewers_watching,
)

NAME = "redis-outage"


async def scenario(run: FaultRun, report: Report, *, clients: int, seconds: float) -> None:
    viewers = await viewers_watching(run)

    load = GiftLoad(run.port, run.seed, clients=clients, tag="redis")
    load.phase = "before"
    load.start()
    await asyncio.sleep(seconds)
    run.redis.kill()
    load.phase = "redis-down"
    # Meanwhile another worker commits gifts too: nobody can broadcast them, so only the room
    # hub's recovery can bring them to the viewers.
    direct = await asyncio.to_thread(run.direct_gifts, 4 * run.rooms, "direct", "redis-down-direct")
    await asyncio.sleep(seconds)
    await load.stop(give_up=True)
    load.answers += direct
    ready_while_down = await asyncio.to_thread(http_get_status, run.port, "/readyz")

    report.check(
        "gifts committed by another worker while Redis was down",
        all(answer.acknowledged for answer in direct),
        f"{sum(1 for answer in direct if answer.acknowledged)} of {len(direct)} applied by gift_send",
    )
    sent = [answer for answer in load.answers if answer.phase == "redis-down"]
    acknowledged = sum(1 for answer in sent if answer.acknowledged)
    # Decided: the database is the source of truth, so gifting goes on through a Redis outage
    # (the throttle lets sends through while it cannot count; broadcasts resume afterwards).
    report.check(
        "while Redis was down every send was acknowledged",
        bool(sent) and acknowledged == len(sent),
        f"{acknowledged} acknowledged of {len(sent)} attempts "
        f"{dict(load.statuses('redis-down'))}; before {dict(load.statuses('before'))}",
    )

    await asyncio.to_thread(run.redis.start)
    ready_after = await asyncio.to_thread(http_get_status, run.port, "/readyz")
    report.check(
        "/readyz says 503 while Redis is down and 200 once it is back",
        (ready_while_down, ready_after) == (503, 200),
        f"{ready_while_down} while down, {ready_after} after",
    )
    # No gift is sent now, so no later event can reveal the gap: the hub must notice on its own.
    await viewers_check(report, viewers, stored_events(run), timeout=15, when=" once Redis was back, unprompted")

    load.phase = "redis-back"
    load.start(tag="redis-back")
    await asyncio.sleep(seconds)
    await load.stop()
    report.note(f"after Redis came back: {dict(load.statuses('redis-back'))}")
    failed_answers_check(report, load, allowed_5xx=(503,), name="refusals are clear (JSON code, 503 at worst)")
    await closing_checks(report, run, load, viewers, when=" to the end")


def run(report: Report, *, clients: int, seconds: float) -> None:
    with FaultRun(NAME, report) as world:
        asyncio.run(scenario(world, report, clients=clients, seconds=seconds))
