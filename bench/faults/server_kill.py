"""SIGKILL the whole server (uvicorn master and workers) while gifts are being sent, restart it, go on.

Clients whose request was cut off retry the same MsgId once the server is back: a gift that had
committed before the kill must answer as a replay (200, same seq), one that had not is applied
then (201). Viewers reconnect with `?since=<last seq>` and must get every committed event once.
"""

import asyncio

from faults.harness import (
    FaultRun,
    GiftLoad,
    Report,
    closing_checks,
    failed_answers_check,
    viewers_watching,
)

NAME = "server-kill"


async def scenario(run: FaultRun, report: Report, *, clients: int, seconds: float, kills: int = 2) -> None:
    assert run.server is not None
    viewers = await viewers_watching(run)

    load = GiftLoad(run.port, run.seed, clients=clients, tag="kill")
    load.phase = "before"
    load.start()
    await asyncio.sleep(seconds)
    downtime = []
    for number in range(1, kills + 1):
        attempts_before = len(load.answers)
        run.server.kill()
        load.phase = f"down-{number}"
        killed_at = asyncio.get_running_loop().time()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(run.server.start, 60)
        downtime.append(asyncio.get_running_loop().time() - killed_at)
        load.phase = f"after-{number}"
        report.note(
            f"kill {number}: server SIGKILLed after {attempts_before} attempts, back after {downtime[-1]:.1f} s"
        )
        await asyncio.sleep(seconds)
    await load.stop()

    histories = load.histories()
    cut = {msg_id: h for msg_id, h in histories.items() if any(answer.status == 0 for answer in h.answers)}
    retried = [h for h in cut.values() if h.retried]
    replayed = sum(1 for h in retried if any(answer.status == 200 for answer in h.answers))
    applied_later = sum(1 for h in retried if any(answer.status == 201 for answer in h.answers))
    report.check(
        "the load was cut by the kills and resumed",
        bool(retried) and replayed + applied_later == len(retried),
        f"{len(histories)} MsgIds, {len(cut)} cut off by a kill; of the {len(retried)} retried, {replayed} had "
        f"committed (replayed as 200), {applied_later} were applied on retry (201), "
        f"{len(retried) - replayed - applied_later} never settled",
    )
    failed_answers_check(report, load, allowed_5xx=(), name="no server error after the restart")
    await closing_checks(report, run, load, viewers)


def run(report: Report, *, clients: int, seconds: float) -> None:
    with FaultRun(NAME, report) as world:
        asyncio.run(scenario(world, report, clients=clients, seconds=seconds))
