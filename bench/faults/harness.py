"""What every fault run shares: its own world, a gift load that keeps every answer, viewers that check seqs.

A fault run owns everything it breaks: a fresh database `gs_fault_<scenario>_<pid>`, a private
redis-server on a free port (the machine's shared Redis is never stopped), a channel-layer prefix
of its own and a uvicorn server. After the fault, the database is compared with what the clients
were told: the ledger must balance, every acknowledged gift must exist exactly once, a refused gift
must have moved nothing, and every viewer must have seen every committed event once, in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg
from common import PYTHON, ROOT, HttpConnection, Server, database_drop, database_recreate, pg_url, seed, server_env
from websockets.asyncio.client import connect as websocket_connect
from websockets.exceptions import WebSocketException

SEED_COINS = 1_000_000  # per sender: far more than a run can spend, so no gift is refused for money
GIFT_ID = "rose"  # bench/seed.py's gift, price 1
REQUEST_TIMEOUT = 15.0
RETRY_PAUSE = 0.1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the report -----------------------------------------------------------------------------------


class Report:
    """The PASS/FAIL lines of one scenario, printed as each check is decided."""

    def __init__(self, scenario: str):
        self.scenario = scenario
        self.passed: list[str] = []
        self.failed: list[str] = []

    def check(self, name: str, ok: bool, figures: str = "") -> bool:
        (self.passed if ok else self.failed).append(name)
        suffix = f": {figures}" if figures else ""
        print(f"{'PASS' if ok else 'FAIL'} {self.scenario} | {name}{suffix}", flush=True)
        return ok

    def note(self, text: str) -> None:
        print(f"     {self.scenario} | {text}", flush=True)


# --- the world of one run -------------------------------------------------------------------------


class RedisServer:
    """A redis-server of the run's own, on a free port, without persistence: a restart starts empty."""

    def __init__(self, port: int, log: Path):
        self.port = port
        self.log = log
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.process = subprocess.Popen(
            command, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: what a crashed or OOM-killed Redis looks like to its clients."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


class FaultRun:
    """One scenario's world, as a context manager: whatever it started is stopped, its database dropped.

    The server is the production shape: two uvicorn workers (so gifts and viewers meet through
    Redis) with a per-process PostgreSQL pool.
    """

    def __init__(self, scenario: str, report: Report, *, rooms: int = 3, senders: int = 8, server: str = "uvicorn-2"):
        self.report = report
        tag = f"{scenario.replace('-', '_')}_{os.getpid()}"
        self.database = f"gs_fault_{tag}"
        self.channel_prefix = f"gs-fault-{scenario}-{os.getpid()}-{secrets.token_hex(3)}"
        self.rooms = rooms
        self.senders = senders
        self.server_name = server
        self.workdir = Path(tempfile.mkdtemp(prefix=f"gs-fault-{scenario}-"))
        self.redis = RedisServer(free_port(), self.workdir / "redis.log")
        self.server: Server | None = None
        self.env: dict[str, str] = {}
        self.seed: dict = {}
        self.seed_path = self.workdir / "seed.json"
        self.database_made = False

    def __enter__(self) -> FaultRun:
        try:
            self.redis.start()
            database_recreate(self.database)
            self.database_made = True
            self.env = server_env(
                self.database, self.redis.url, CHANNEL_LAYER_PREFIX=self.channel_prefix, DATABASE_POOL_SIZE="4"
            )
            self.seed = seed(self.env, rooms=self.rooms, senders=self.senders, coins=SEED_COINS, out=self.seed_path)
            self.server = Server(self.server_name, free_port(), self.env, log=self.workdir / "server.log")
            self.server.start(timeout=60)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.redis.kill()
        if self.database_made:
            database_drop(self.database)
        if self.report.failed:
            self._show_server_log()
            self.report.note(f"logs kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _show_server_log(self) -> None:
        log = self.workdir / "server.log"
        if not log.exists():
            return
        lines = log.read_text(errors="replace").splitlines()
        origins = server_error_origins(lines)
        if origins:
            self.report.note("HTTP 500s in the server log, by the product line that raised:")
            for (frame, error), count in origins.most_common(8):
                self.report.note(f"  {count} x {frame} -> {error[:160]}")
        self.report.note("last lines of the server log:")
        for line in lines[-12:]:
            print(f"     | {line}", flush=True)

    def direct_gifts(self, count: int, tag: str, phase: str) -> list[Answer]:
        """Commit gifts from a process of its own through `gift_send` (bench/faults/direct_gifts.py)."""
        script = Path(__file__).resolve().parent / "direct_gifts.py"
        with (self.workdir / "direct.log").open("ab") as log:
            out = subprocess.run(
                [PYTHON, str(script), str(self.seed_path), str(count), tag],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                check=True,
            ).stdout
        answers = []
        for line in out.decode().splitlines():
            gift = json.loads(line)
            status = 201 if gift["result"] == 0 else 500
            answers.append(
                Answer(gift["msg_id"], gift["sender"], gift["room"], phase, status, gift["result"], gift["seq"])
            )
        return answers

    def sql(self) -> psycopg.Connection:
        return psycopg.connect(pg_url(self.database), autocommit=True)


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\w+)')
_PRODUCT_APPS = ("gifts/", "wallets/", "rankings/", "gifting_site/")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_]\w*\.)*[A-Za-z_]\w*(Error|Exception|Timeout|Shutdown)\b")
_TRACEBACK_LINE = re.compile(r"^(\s|Traceback|During handling|The above exception|$)")


def server_error_origins(lines: list[str]) -> Counter[tuple[str, str]]:
    """Django's "Internal Server Error" tracebacks, counted by the frame that raised and the exception.

    The frame is the last one in the product's own code or, when the error rose before the view
    ran (authentication, throttling), the last one in Django REST framework.
    """
    origins: Counter[tuple[str, str]] = Counter()
    product_frame = framework_frame = any_frame = error = None
    inside = False

    def close() -> None:
        if inside:
            if any_frame is None and error is None:
                # Django also logs the 500s a view answers itself (10005 as JSON): no traceback there.
                origins[("a 500 answered by the view", "no traceback")] += 1
            else:
                origins[(product_frame or framework_frame or any_frame or "?", error or "?")] += 1

    for line in lines:
        if line.startswith("Internal Server Error"):
            close()
            inside, product_frame, framework_frame, any_frame, error = True, None, None, None, None
        elif not inside:
            continue
        elif match := _FRAME.search(line):
            path = match[1].removeprefix(f"{ROOT}/").split("site-packages/")[-1]
            any_frame = f"{path}:{match[2]} {match[3]}"
            if path.startswith(_PRODUCT_APPS):
                product_frame = any_frame
            elif path.startswith("rest_framework/"):
                framework_frame = any_frame
        elif _EXCEPTION_LINE.match(line):
            error = line
        elif not _TRACEBACK_LINE.match(line):
            close()  # the next log record: the traceback is over
            inside = False
    close()
    return origins


# --- the gift load --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One attempt at one MsgId, as the client saw it. status 0: no answer (connection lost)."""

    msg_id: str
    sender: str
    room: str
    phase: str
    status: int
    code: int | None = None
    seq: int | None = None
    is_json: bool = True
    raw: str = ""
    seconds: float = 0.0
    retrying: bool = True

    @property
    def acknowledged(self) -> bool:
        return self.status in (200, 201) and self.seq is not None


@dataclass
class MsgIdHistory:
    sender: str
    room: str
    retried: bool  # sent by a client that retries until it gets a final answer
    answers: list[Answer] = field(default_factory=list)

    @property
    def acknowledged_seqs(self) -> set[int]:
        return {answer.seq for answer in self.answers if answer.acknowledged}

    @property
    def refused(self) -> bool:
        """Every attempt was answered, and every answer said no: nothing may have moved."""
        return all(answer.status for answer in self.answers) and not self.acknowledged_seqs

    @property
    def uncertain(self) -> bool:
        """Never acknowledged, and some attempt lost its answer: it may have been applied, once at most."""
        return not self.acknowledged_seqs and not self.refused


class GiftLoad:
    """CLIENTS keep-alive connections, each sending one gift at a time, every attempt recorded.

    Even-numbered clients repeat a MsgId as a careful app does: when the answer was lost
    (connection cut, server down) or said "try again" (5xx, 409 in flight), for up to
    `retry_for` seconds; any other answer settles it. Odd-numbered clients give up on a MsgId
    after its first attempt, whatever happened, so some MsgIds stay refused or uncertain: the
    money they moved (none for a refusal, once at most for a lost answer) is checked too.
    """

    def __init__(self, port: int, seed_data: dict, *, clients: int, tag: str, retry_for: float = 60.0):
        self.port = port
        self.senders = seed_data["senders"]
        self.rooms = seed_data["rooms"]
        self.clients = clients
        self.tag = tag
        self.retry_for = retry_for
        self.phase = "start"
        self.answers: list[Answer] = []
        self.stopping = False
        self.giving_up = False
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, tag: str | None = None) -> None:
        """Start the clients; a new tag starts fresh MsgIds after a stop."""
        self.tag = tag or self.tag
        self.stopping = False
        self.tasks = [asyncio.create_task(self._client(number)) for number in range(self.clients)]

    async def stop(self, *, give_up: bool = False) -> None:
        """Finish each client's current MsgId (or, with give_up, drop it at its next failure), then stop."""
        self.stopping = True
        self.giving_up = give_up
        await asyncio.gather(*self.tasks)
        self.giving_up = False

    def histories(self) -> dict[str, MsgIdHistory]:
        histories: dict[str, MsgIdHistory] = {}
        for answer in self.answers:
            history = histories.setdefault(
                answer.msg_id, MsgIdHistory(answer.sender, answer.room, retried=answer.retrying)
            )
            history.answers.append(answer)
        return histories

    def statuses(self, phase: str | None = None) -> Counter[str]:
        return Counter(
            f"{answer.status}" + (f"/{answer.code}" if answer.code is not None and answer.status >= 300 else "")
            for answer in self.answers
            if phase is None or answer.phase == phase
        )

    async def _client(self, number: int) -> None:
        rng = random.Random(f"{self.tag}-{number}")
        connection = HttpConnection(self.port)
        index = 0
        try:
            while not self.stopping:
                sender = rng.choice(self.senders)
                room = rng.choice(self.rooms)
                retrying = number % 2 == 0
                msg_id = f"{self.tag}-{number}-{index}"
                await self._send_until_settled(connection, sender, room, msg_id, retrying=retrying)
                index += 1
        finally:
            await connection.close()

    async def _send_until_settled(
        self, connection: HttpConnection, sender: dict, room: str, msg_id: str, *, retrying: bool
    ) -> None:
        give_up_at = time.monotonic() + self.retry_for
        while True:
            phase = self.phase
            started = time.monotonic()
            try:
                status, body = await asyncio.wait_for(
                    connection.request(
                        "POST",
                        f"/api/rooms/{room}/gifts/",
                        {"gift_id": GIFT_ID, "msg_id": msg_id},
                        {"Authorization": f"Token {sender['token']}"},
                    ),
                    REQUEST_TIMEOUT,
                )
            except (ConnectionError, OSError, TimeoutError):
                await connection.close()  # a half-read answer leaves the connection unusable
                answer = Answer(msg_id, sender["user_id"], room, phase, 0)
                self.answers.append(replace(answer, seconds=time.monotonic() - started, retrying=retrying))
            else:
                answer = _answer_of(msg_id, sender["user_id"], room, phase, status, body)
                self.answers.append(replace(answer, seconds=time.monotonic() - started, retrying=retrying))
                if status in (200, 201) or (400 <= status < 500 and status != 409):
                    return
            await asyncio.sleep(RETRY_PAUSE)  # after a failure an app waits a moment, whether it retries or not
            if not retrying or self.giving_up or time.monotonic() > give_up_at:
                return


def _answer_of(msg_id: str, sender: str, room: str, phase: str, status: int, body: dict) -> Answer:
    if "raw" in body and len(body) == 1:  # HttpConnection's wrapping of a body that is not JSON
        return Answer(msg_id, sender, room, phase, status, is_json=False, raw=body["raw"][:120])
    code = body.get("code", body.get("result"))
    event = body.get("event")
    seq = event.get("seq") if isinstance(event, dict) else None
    return Answer(msg_id, sender, room, phase, status, code if isinstance(code, int) else None, seq)


# --- websocket viewers ----------------------------------------------------------------------------


class Viewer:
    """Watches one room over the websocket and reconnects with `?since=<last seq>` whenever cut off.

    It starts with `since=0`, so it should never need a snapshot: every event must arrive as a
    `gifts` event with the next seq. Anything else is written down as a gap or a repeat.
    """

    def __init__(self, port: int, room: str):
        self.port = port
        self.room = room
        self.last_seq = 0
        self.msg_ids: dict[int, str] = {}  # seq -> msg_id, as delivered
        self.repeats: list[int] = []
        self.gaps: list[tuple[int, int]] = []
        self.snapshots = 0
        self.errors: list[str] = []
        self.connections = 0
        self.connected = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def caught_up(self, seq: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.last_seq < seq and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return self.last_seq >= seq

    async def _watch(self) -> None:
        origin = f"http://127.0.0.1:{self.port}"
        while True:
            uri = f"ws://127.0.0.1:{self.port}/ws/rooms/{self.room}/?since={self.last_seq}"
            try:
                async with websocket_connect(uri, origin=origin, proxy=None, open_timeout=5) as socket_:
                    self.connections += 1
                    self.connected.set()
                    async for text in socket_:
                        try:
                            message = json.loads(text)
                        except ValueError:
                            self.errors.append(f"not JSON: {str(text)[:80]}")
                            continue
                        self._handle(message)
            except (OSError, WebSocketException, TimeoutError):
                pass
            await asyncio.sleep(0.2)

    def _handle(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "gifts":
            for event in message["events"]:
                seq = event["seq"]
                if seq <= self.last_seq:
                    self.repeats.append(seq)
                    continue
                if seq > self.last_seq + 1:
                    self.gaps.append((self.last_seq + 1, seq - 1))
                self.msg_ids[seq] = event["msg_id"]
                self.last_seq = seq
        elif kind == "snapshot":
            self.snapshots += 1
            if message["seq"] > self.last_seq:
                self.gaps.append((self.last_seq + 1, message["seq"]))
                self.last_seq = message["seq"]
        elif kind == "error":
            self.errors.append(f"{message.get('code')}: {message.get('message')}")


# --- checks against the database ------------------------------------------------------------------


def ledger_check(report: Report, run: FaultRun) -> None:
    """The money invariants (SPEC section 8), checked by `manage.py ledger_check` on the run's database."""
    result = subprocess.run(
        [PYTHON, "manage.py", "ledger_check"], cwd=ROOT, env=run.env, capture_output=True, text=True, timeout=120
    )
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    shown = lines if result.returncode else [line for line in lines if "balances sum" in line] + lines[-1:]
    report.check(
        "manage.py ledger_check passes", result.returncode == 0, "; ".join(shown) or result.stderr.strip()[-300:]
    )


@dataclass(frozen=True)
class StoredEvent:
    msg_id: str
    sender: str
    room: str
    seq: int
    coins: int


def stored_events(run: FaultRun) -> list[StoredEvent]:
    with run.sql() as db:
        rows = db.execute(
            "SELECT g.msg_id, p.user_id, r.room_id, g.seq, g.coins FROM gifts_giftevent g "
            "JOIN wallets_profile p ON p.id = g.sender_id JOIN gifts_room r ON r.id = g.room_id ORDER BY g.id"
        ).fetchall()
    return [StoredEvent(*row) for row in rows]


def gifts_check(report: Report, run: FaultRun, load: GiftLoad) -> list[StoredEvent]:
    """What the clients were told against what the database holds; returns the stored events."""
    histories = load.histories()
    events = stored_events(run)
    by_msg_id: dict[str, list[StoredEvent]] = defaultdict(list)
    for event in events:
        by_msg_id[event.msg_id].append(event)
    with run.sql() as db:
        references = [row[0] for row in db.execute("SELECT reference FROM wallets_transfer WHERE kind = 'gift'")]
        coins = dict(
            db.execute(
                "SELECT p.user_id, a.balance FROM wallets_account a JOIN wallets_profile p ON p.id = a.profile_id "
                "WHERE a.kind = 'coins'"
            ).fetchall()
        )
        rooms = dict(db.execute("SELECT room_id, last_seq FROM gifts_room").fetchall())
    transferred = Counter(reference.split(":", 3)[-1] for reference in references)

    acknowledged = {msg_id: h for msg_id, h in histories.items() if h.acknowledged_seqs}
    refused = {msg_id: h for msg_id, h in histories.items() if h.refused}
    uncertain = {msg_id: h for msg_id, h in histories.items() if h.uncertain}
    lost = [msg_id for msg_id in acknowledged if len(by_msg_id.get(msg_id, [])) != 1]
    wrong_seq = [
        msg_id
        for msg_id, history in acknowledged.items()
        if len(by_msg_id.get(msg_id, [])) == 1
        and (history.acknowledged_seqs, history.sender, history.room)
        != ({by_msg_id[msg_id][0].seq}, by_msg_id[msg_id][0].sender, by_msg_id[msg_id][0].room)
    ]
    report.check(
        "every acknowledged gift exists exactly once",
        not lost and not wrong_seq,
        f"{len(acknowledged)} acknowledged, {len(lost)} missing or repeated, "
        f"{len(wrong_seq)} with another seq, sender or room"
        + (f" (e.g. {(lost + wrong_seq)[:3]})" if lost or wrong_seq else ""),
    )
    moved = [msg_id for msg_id in refused if by_msg_id.get(msg_id) or transferred.get(msg_id)]
    report.check(
        "no refused gift moved money",
        not moved,
        f"{len(refused)} refused, {len(moved)} of them with an event or a transfer"
        + (f" (e.g. {moved[:3]})" if moved else ""),
    )
    repeated = [msg_id for msg_id, found in by_msg_id.items() if len(found) > 1 or transferred.get(msg_id, 0) > 1]
    strangers = [msg_id for msg_id in by_msg_id if msg_id not in histories]
    spent: Counter[str] = Counter()
    for event in events:
        spent[event.sender] += event.coins
    overcharged = [
        user_id for user_id in {s["user_id"] for s in load.senders} if coins.get(user_id) != SEED_COINS - spent[user_id]
    ]
    report.check(
        "nothing charged twice",
        not repeated and not strangers and not overcharged,
        f"{len(events)} events for {len(by_msg_id)} MsgIds, {len(repeated)} MsgIds applied twice, "
        f"{len(strangers)} never sent, {len(overcharged)} senders whose coins differ from their events"
        + (
            f"; {len(uncertain)} MsgIds whose answer was lost, {sum(1 for m in uncertain if m in by_msg_id)} of them "
            "applied"
            if uncertain
            else ""
        ),
    )
    broken_rooms = []
    for room_id, last_seq in rooms.items():
        seqs = sorted(event.seq for event in events if event.room == room_id)
        if seqs != list(range(1, last_seq + 1)):
            broken_rooms.append(room_id)
    report.check(
        "room seqs contiguous in the database",
        not broken_rooms,
        f"{len(rooms)} rooms, last seqs {sorted(rooms.values())}"
        + (f", broken: {broken_rooms}" if broken_rooms else ""),
    )
    return events


async def viewers_check(
    report: Report, viewers: list[Viewer], events: list[StoredEvent], timeout: float, when: str = ""
) -> None:
    """Each viewer must end with exactly the committed events of its room, once each, in seq order."""
    for viewer in viewers:
        room_events = {event.seq: event.msg_id for event in events if event.room == viewer.room}
        last = max(room_events, default=0)
        caught_up = await viewer.caught_up(last, timeout)
        missing = sorted(set(room_events) - set(viewer.msg_ids))
        wrong = [seq for seq, msg_id in viewer.msg_ids.items() if room_events.get(seq) != msg_id]
        ok = caught_up and not missing and not wrong and not viewer.repeats and not viewer.gaps and not viewer.errors
        report.check(
            f"viewer of {viewer.room} saw every committed event once, in order{when}",
            ok,
            f"{len(viewer.msg_ids)}/{len(room_events)} events up to seq {viewer.last_seq}/{last}, "
            f"{viewer.connections} connections, {len(viewer.repeats)} repeats, gaps {viewer.gaps[:3]}, "
            f"{viewer.snapshots} snapshots, {len(missing)} missing, {len(wrong)} wrong"
            + (f", errors {viewer.errors[:2]}" if viewer.errors else ""),
        )


async def viewers_watching(run: FaultRun) -> list[Viewer]:
    """One connected websocket viewer per seeded room."""
    viewers = [Viewer(run.port, room) for room in run.seed["rooms"]]
    for viewer in viewers:
        viewer.start()
    await asyncio.wait_for(asyncio.gather(*(viewer.connected.wait() for viewer in viewers)), 15)
    return viewers


async def closing_checks(
    report: Report, run: FaultRun, load: GiftLoad, viewers: list[Viewer], *, when: str = ""
) -> None:
    """What every scenario ends on: the ledger, the acknowledged gifts, and every viewer's events."""
    ledger_check(report, run)
    events = gifts_check(report, run, load)
    await viewers_check(report, viewers, events, timeout=20, when=when)
    for viewer in viewers:
        await viewer.stop()


def failed_answers_check(report: Report, load: GiftLoad, *, allowed_5xx: tuple[int, ...], name: str) -> None:
    """Every refusal must be JSON with a code; a 5xx only with one of the statuses this fault may cause."""
    refusals = [answer for answer in load.answers if answer.status and not answer.acknowledged]
    unclear = [answer for answer in refusals if not answer.is_json or answer.code is None]
    unexpected = [answer for answer in refusals if answer.status >= 500 and answer.status not in allowed_5xx]
    examples = [f"{answer.status} {answer.raw or answer.code!r}" for answer in (unclear + unexpected)[:2]]
    report.check(
        name,
        not unclear and not unexpected,
        f"{len(load.answers)} attempts {dict(load.statuses())}; {len(refusals)} refusals, "
        f"{len(unclear)} without a JSON code, {len(unexpected)} 5xx not expected here "
        f"(expected: {'/'.join(map(str, allowed_5xx)) or 'none'})" + (f"; e.g. {examples}" if examples else ""),
    )
