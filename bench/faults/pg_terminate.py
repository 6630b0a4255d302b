"""Terminate the server's PostgreSQL connections again and again while gifts are being sent.

Every few hundred milliseconds a separate connection runs pg_terminate_backend on every other
backend of the run's database, so transactions die wherever they happen to be: before the
transfer, between the transfer and the event, at commit. A gift must then be all or nothing,
the client must get a clear 5xx (JSON with a code, never an HTML page), and its retry with the
same MsgId must apply the gift once.
"""

import asyncio
import time

from faults.harness import (
    FaultRun,
    GiftLoad,
    Report,
    closing_checks,
    failed_answers_check,
    viewers_watching,
)

NAME = "pg-terminate"
TERMINATE_EVERY = 0.5


def terminate_backends(run: FaultRun, seconds: float) -> tuple[int, int]:
    """Kill the database's other backends every TERMINATE_EVERY s; returns (rounds, backends killed)."""
    rounds = killed = 0
    with run.sql() as db:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rows = db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [run.database],
            ).fetchall()
            rounds += 1
            killed += sum(1 for (done,) in rows if done)
            time.sleep(TERMINATE_EVERY)
    return rounds, killed


async def scenario(run: FaultRun, report: Report, *, clients: int, seconds: float) -> None:
    viewers = await viewers_watching(run)

    load = GiftLoad(run.port, run.seed, clients=clients, tag="pgterm")
    load.phase = "before"
    load.start()
    await asyncio.sleep(seconds / 2)
    load.phase = "terminating"
    rounds, killed = await asyncio.to_thread(terminate_backends, run, seconds * 2)
    load.phase = "after"
    await asyncio.sleep(seconds / 2)
    await load.stop()

    histories = load.histories()
    slowest = max((answer.seconds for answer in load.answers), default=0.0)
    hit = {msg_id: h for msg_id, h in histories.items() if any(answer.status >= 500 for answer in h.answers)}
    report.check(
        "backends were terminated during the load",
        killed > 0,
        f"{killed} backends terminated in {rounds} rounds; {len(hit)} of {len(histories)} MsgIds got a 5xx, "
        f"{sum(1 for h in hit.values() if h.acknowledged_seqs)} of those applied on retry; "
        f"answers while terminating {dict(load.statuses('terminating'))}, slowest {slowest:.1f} s",
    )
    failed_answers_check(report, load, allowed_5xx=(503,), name="failed requests answer a coded 503")
    await closing_checks(report, run, load, viewers)


def run(report: Report, *, clients: int, seconds: float) -> None:
    with FaultRun(NAME, report) as world:
        asyncio.run(scenario(world, report, clients=clients, seconds=seconds))
