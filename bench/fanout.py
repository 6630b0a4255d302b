"""Fan-out benchmark: V viewers in one room, R gifts/s for S seconds, Giftstream beside a bare reference.

    python bench/fanout.py [--viewers 1000] [--rate 200] [--seconds 30] [--server uvicorn-1]
                           [--http-server gunicorn-2]
                           [--window-ms 100] [--viewer-processes N] [--compression deflate|none]
                           [--only both|giftstream|reference] [--goal] [--pk] [--publish-only]

One command runs two phases, one after the other on the same machine, and prints them side by
side with their ratio:

1. Giftstream. A fresh PostgreSQL database (bench/common.py), seeded by bench/seed.py with one
   live room and `--senders` people holding tokens; the ASGI server (`--server`) runs with
   REDIS_URL set, so room updates go through the Redis channel layer, with
   GIFT_MERGE_WINDOW_MS = `--window-ms`, DATABASE_POOL_SIZE = `--pool` (as the README runs it
   in production) and the send throttle raised (server_env). V anonymous
   viewers connect to `/ws/rooms/<room>/` with an Origin the server allows, from
   `--viewer-processes` client processes (bench/fanout_viewers.py, asyncio + `websockets`;
   default one per 500 viewers), each viewer reading its snapshot first. Viewers negotiate
   permessage-deflate as browsers do (`--compression none` to turn it off on both sides).
   Then a separate sender process POSTs
   `/api/rooms/<room>/gifts/` (to the `--http-server` beside the ASGI server when given,
   as the README's production layout serves HTTP) (token auth, one rose each, senders in turn) at R gifts/s for
   S seconds, open loop: each gift has a due time, `--connections` keep-alive connections take
   them in order, and a late start is recorded as sender lag rather than slowing the schedule.
   A gift not started by the end of the S seconds is not sent (the table says how many), so
   a server that cannot keep up shows a lower achieved rate, not a longer run.
2. Reference. bench/ws_reference.py, a bare `websockets` server, gets the same number of
   viewers and the same event payloads (the first event Giftstream returned, with a new msg_id
   each) at the same rate over a publisher websocket; it numbers and stamps them and
   broadcasts each merge window's events as one message with `websockets.broadcast`. It is
   the floor: what fan-out costs in Python with no database, channel layer or per-viewer outbox.
   It sends only `gifts` messages; Giftstream also sends `leaderboard` ones (counted by type).

With `--publish-only` nothing is sent over HTTP and nothing is written: the runner's own
process hands numbered events (DEFAULT_EVENT's payload, as the reference gets) to a
`gifts.broadcast.RoomPublisher`, the publisher every server process runs after its commits,
at the same rate. What is left is the fan-out itself, channel layer, room hub and viewers'
sockets, beside the reference's, without the sends' CPU on the same two cores.

With `--pk` Giftstream seeds two rooms fighting a PK battle that outlasts the run: the viewer
processes watch the rooms in turn (half the viewers each at the default one process per 500)
and the gifts go to the rooms in turn. Each `pk` message's latency is its read time minus its
`at`, when the scores it shows last changed (stamped inside the gift transaction, as an
event's `at` is). The reference keeps one room.

Measured per phase:

- latency: commit-to-receive, for every (viewer, event) pair's first receipt: the time the
  viewer read the message minus the event's `at` (Giftstream stamps it when it writes the
  event row, inside the gift's transaction, just before the commit; the reference when it
  numbers the event). One clock: everything runs on this machine. p50/p99/p99.9/max, 1 ms
  buckets. The sender separately reports send-to-answer (the POST's latency) and
  send-to-commit (`at` minus the time the request was written).
- loss: after the last gift the runner reads the room's last seq N (GET /api/rooms/<room>/ or
  the reference's last answer) and each viewer must then hold seqs (its first snapshot's
  seq, N] exactly once. Missing seqs are lost; seqs a later snapshot covered are counted as
  skipped (the viewer was reset, as a slow consumer is); extra receipts are duplicates; an
  event that is not the next expected seq is out of order. Mid-run snapshots, sockets closed
  by the server, and viewers still short of N after `--drain` seconds are counted too.
- websocket messages per viewer per second (every message after the first snapshot, by type,
  over the sending time), and events received.
- server resident memory (Server.rss_mb(): the server and its workers) once the viewers are
  in, and its peak while gifts are sent; the server's CPU seconds and the client processes'
  CPU share while sending, so a saturated client shows up instead of passing as server lag.

The goal to compare against: p99 <= window + 100 ms and 0 lost.

Cleanup: every child runs in its own session and is stopped (then killed) in a `finally`, on
success, error, Ctrl-C or SIGTERM; the database is dropped. The temporary directory with the
server and client logs is kept only with `--keep` or after a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    PYTHON,
    ROOT,
    HttpConnection,
    Server,
    database_drop,
    database_recreate,
    group_cpu_seconds,
    machine,
    percentile,
    seed,
    server_env,
)

BENCH = Path(__file__).resolve().parent
NOT_SENT = "not sent (behind)"
# What the publish-only sender needs of the server's environment to reach the same hubs.
PUBLISHER_ENV = (
    "DATABASE_URL",
    "REDIS_URL",
    "CHANNEL_LAYER_PREFIX",
    "DJANGO_SETTINGS_MODULE",
    "PYTHONPATH",
    "LOG_LEVEL",
)
ROOM = "bench-room-0"
ASGI_SERVERS = ["uvicorn-1", "uvicorn-2", "uvicorn-3", "daphne"]
# The event a reference-only or publish-only run sends: the shape of Giftstream's event payload.
DEFAULT_EVENT = {
    "kind": "gift",
    "reverses_seq": None,
    "msg_id": "",
    "sender": {"user_id": "bench-viewer-0", "nickname": "Viewer 0", "avatar": ""},
    "receiver_id": "bench-host-0",
    "gift": {
        "gift_id": "rose",
        "name": "Rose",
        "icon": "/static/rose.svg",
        "animation": {"format": "webp", "url": ""},
    },
    "value": 1,
    "num": 1,
    "count": 1,
    "coins": 1,
    "effect": "",
    "combo": 1,
}


# --- the sender process ---------------------------------------------------------------------------


def at_seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass
class SendLog:
    statuses: Counter[str] = field(default_factory=Counter)
    answer: list[float] = field(default_factory=list)  # send -> answer, seconds
    commit: list[float] = field(default_factory=list)  # send -> event's `at`, seconds
    lag: list[float] = field(default_factory=list)  # due -> sent, seconds
    template: dict[str, Any] | None = None
    first_sent: float | None = None
    last_answer: float = 0.0

    def summary(self, rate: float, last_seqs: dict[str, int]) -> dict[str, Any]:
        ok = len(self.answer)
        elapsed = max(self.last_answer - (self.first_sent or 0.0), 1e-9)
        return {
            "sent": sum(self.statuses.values()) - self.statuses[NOT_SENT],
            "not_sent": self.statuses[NOT_SENT],
            "ok": ok,
            "statuses": dict(self.statuses),
            "elapsed_s": round(elapsed, 3),
            "achieved_rate": round(ok / elapsed, 1),
            "answer_p50_ms": round(percentile(self.answer, 0.50) * 1000, 1),
            "answer_p99_ms": round(percentile(self.answer, 0.99) * 1000, 1),
            "commit_p50_ms": round(percentile(self.commit, 0.50) * 1000, 1),
            "commit_p99_ms": round(percentile(self.commit, 0.99) * 1000, 1),
            "lag_p99_ms": round(percentile(self.lag, 0.99) * 1000, 1),
            "lag_max_ms": round(max(self.lag, default=0.0) * 1000, 1),
            "last_seq": sum(last_seqs.values()),
            "last_seqs": last_seqs,
            "template": self.template,
        }


async def schedule(queue: asyncio.Queue, total: int, rate: float, workers: int) -> None:
    """Put (gift number, due time, end of sending) on the queue at the due times: an open loop.

    A slow server makes gifts start late (sender lag), never the schedule slower; a gift that
    has not started when the sending time is over is not sent, so a run lasts S seconds.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + total / rate
    for number in range(total):
        due = start + number / rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((number, due, end))
    for _ in range(workers):
        queue.put_nowait(None)


async def send_to_giftstream(config: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    log = SendLog()
    tokens, rooms = config["tokens"], config["rooms"]
    queue: asyncio.Queue = asyncio.Queue()

    async def worker() -> None:
        connection = HttpConnection(config["port"])
        while (item := await queue.get()) is not None:
            number, due, end = item
            if loop.time() > end:
                log.statuses[NOT_SENT] += 1
                continue
            body = {"gift_id": "rose", "msg_id": f"fanout-{number}"}
            path = f"/api/rooms/{rooms[number % len(rooms)]}/gifts/"
            headers = {"Authorization": f"Token {tokens[number % len(tokens)]}"}
            sent, sent_wall = loop.time(), time.time()
            log.first_sent = sent if log.first_sent is None else log.first_sent
            log.lag.append(sent - due)
            try:
                status, answer = await connection.request("POST", path, body, headers)
            except (ConnectionError, OSError):
                log.statuses["connection-error"] += 1
                continue
            log.last_answer = loop.time()
            log.statuses[str(status)] += 1
            if status == 201:
                log.answer.append(log.last_answer - sent)
                log.commit.append(at_seconds(answer["event"]["at"]) - sent_wall)
                if log.template is None:
                    log.template = answer["event"]
        await connection.close()

    workers = config["connections"]
    total = int(config["rate"] * config["seconds"])
    await asyncio.gather(schedule(queue, total, config["rate"], workers), *(worker() for _ in range(workers)))
    # The rooms' own counts, not the answers': a gift committed whose answer was lost still counts.
    reader = HttpConnection(config["port"])
    last_seqs = {}
    for room_id in rooms:
        status, room = await reader.request("GET", f"/api/rooms/{room_id}/", None, {})
        if status != 200:
            raise RuntimeError(f"GET /api/rooms/{room_id}/ answered {status}: {room}")
        last_seqs[room_id] = room["seq"]
    await reader.close()
    return log.summary(config["rate"], last_seqs)


async def send_to_reference(config: dict[str, Any]) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    loop = asyncio.get_running_loop()
    log = SendLog()
    template = {key: value for key, value in config["template"].items() if key not in ("seq", "at")}
    senders = len(config["tokens"]) or 1
    total = int(config["rate"] * config["seconds"])
    sent_at: dict[str, tuple[float, float]] = {}
    last_seq = 0

    async with connect(
        f"ws://127.0.0.1:{config['port']}/publish/{config['rooms'][0]}", compression=None, proxy=None
    ) as publisher:

        async def read_answers() -> None:
            nonlocal last_seq
            async for text in publisher:
                answer = json.loads(text)
                sent, sent_wall = sent_at.pop(answer["msg_id"])
                log.last_answer = loop.time()
                log.statuses["201"] += 1
                log.answer.append(log.last_answer - sent)
                log.commit.append(at_seconds(answer["at"]) - sent_wall)
                last_seq = max(last_seq, answer["seq"])

        reader = loop.create_task(read_answers())
        queue: asyncio.Queue = asyncio.Queue()
        scheduler = loop.create_task(schedule(queue, total, config["rate"], 1))
        while (item := await queue.get()) is not None:
            number, due, end = item
            if loop.time() > end:
                log.statuses[NOT_SENT] += 1
                continue
            person = number % senders
            event = dict(
                template,
                msg_id=f"fanout-{number}",
                sender={**template["sender"], "user_id": f"bench-viewer-{person}", "nickname": f"Viewer {person}"},
            )
            sent_at[event["msg_id"]] = (loop.time(), time.time())
            log.first_sent = loop.time() if log.first_sent is None else log.first_sent
            log.lag.append(loop.time() - due)
            await publisher.send(json.dumps(event, separators=(",", ":"), ensure_ascii=False))
        await scheduler
        deadline = loop.time() + 30
        while sent_at and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if sent_at:
            log.statuses["unanswered"] += len(sent_at)
        reader.cancel()
    log.template = config["template"]
    return log.summary(config["rate"], {config["rooms"][0]: last_seq})


async def publish_to_hubs(config: dict[str, Any]) -> dict[str, Any]:
    """What a server process's publisher does after its commits, with no commits: events straight to the rooms' hubs.

    Each event is numbered after the room's last seq and stamped `at` when it is handed to
    the publisher (gifts.broadcast.RoomPublisher, as every server process runs it), so the
    latency is publish -> viewer: the fan-out alone, without the sends, the database or the
    HTTP server on the same cores.
    """
    os.environ.update(config["env"])
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from asgiref.sync import sync_to_async

    from gifts import broadcast
    from gifts.models import Room

    loop = asyncio.get_running_loop()
    log = SendLog()
    rooms = config["rooms"]
    last_seqs = await sync_to_async(
        lambda: dict(Room.objects.filter(room_id__in=rooms).values_list("room_id", "last_seq"))
    )()
    publisher = broadcast.RoomPublisher(loop)
    template = {key: value for key, value in config["template"].items() if key not in ("seq", "at")}
    queue: asyncio.Queue = asyncio.Queue()
    scheduler = loop.create_task(schedule(queue, int(config["rate"] * config["seconds"]), config["rate"], 1))
    while (item := await queue.get()) is not None:
        number, due, end = item
        if loop.time() > end:
            log.statuses[NOT_SENT] += 1
            continue
        room_id = rooms[number % len(rooms)]
        last_seqs[room_id] += 1
        now = datetime.now(UTC)
        event = dict(
            template, seq=last_seqs[room_id], at=now.isoformat().replace("+00:00", "Z"), msg_id=f"hub-{number}"
        )
        log.first_sent = loop.time() if log.first_sent is None else log.first_sent
        log.lag.append(loop.time() - due)
        publisher.add(room_id, [event])
        log.statuses["201"] += 1
        log.last_answer = loop.time()
    await scheduler
    await publisher.drain()
    log.template = config["template"]
    return log.summary(config["rate"], last_seqs)


def sender_main(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    send = {"giftstream": send_to_giftstream, "hubs": publish_to_hubs, "reference": send_to_reference}[config["target"]]
    result = asyncio.run(send(config))
    Path(config["out"]).write_text(json.dumps(result))


# --- child processes ------------------------------------------------------------------------------


class Children:
    """Every process the runner starts, so a `finally` can stop them all, whatever happened."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def start(self, command: list[str], log: Path, **options: Any) -> subprocess.Popen:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stderr=log.open("ab"),
            # Own session: a Ctrl-C in the terminal reaches only the runner, which stops these in order.
            start_new_session=True,
            **options,
        )
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen, timeout: float = 10.0) -> None:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def stop_all(self) -> None:
        while self.processes:
            self.stop(self.processes.pop())


def read_json_line(process: subprocess.Popen, deadline: float, what: str) -> dict[str, Any]:
    """One JSON line from a child's stdout, or an error naming what did not come."""
    assert process.stdout is not None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no answer from {what} in time")
        readable, _, _ = select.select([process.stdout], [], [], min(remaining, 1.0))
        if readable:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"{what} exited with {process.wait()} (see its log)")
            return json.loads(line)


def group_rss_mb(pid: int) -> float:
    out = subprocess.run(["ps", "-o", "rss=", "-g", str(pid)], capture_output=True, text=True)
    return sum(int(line) for line in out.stdout.split()) / 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- one phase ------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    port: int
    server_pid: int
    rss_mb: Callable[[], float]
    # A server of its own for the sends (--http-server), counted in the server's CPU.
    http_server_pid: int | None = None

    def cpu_seconds(self) -> float:
        pids = [self.server_pid] + ([self.http_server_pid] if self.http_server_pid else [])
        return sum(group_cpu_seconds(pid) for pid in pids)


def phase_run(
    target: Target, arguments: argparse.Namespace, children: Children, work: Path, sender_config: dict[str, Any]
) -> dict[str, Any]:
    """Connect the viewers, send the gifts, collect every tally. Returns the phase's numbers."""
    origin = f"http://127.0.0.1:{target.port}"
    rooms = sender_config["rooms"]
    shares = [len(part) for part in split(arguments.viewers, arguments.viewer_processes)]
    viewers = []
    for number, count in enumerate(shares):
        tag = f"{target.name}-viewers-{number}"
        # With several rooms (a PK battle), each viewer process watches one, in turn.
        url = f"ws://127.0.0.1:{target.port}/ws/rooms/{rooms[number % len(rooms)]}/"
        command = [PYTHON, str(BENCH / "fanout_viewers.py"), url, origin, str(count)]
        command += ["--compression", arguments.compression, "--tag", tag]
        process = children.start(command, work / f"{tag}.log", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        viewers.append((tag, process))

    deadline = time.monotonic() + 120 + 0.1 * arguments.viewers
    ready = [read_json_line(process, deadline, tag) for tag, process in viewers]
    connected = sum(r["ready"] for r in ready)
    connect_errors: Counter[str] = Counter()
    for r in ready:
        connect_errors.update(r["errors"])
    print(f"  {target.name}: {connected} of {arguments.viewers} viewers connected", flush=True)

    rss_idle = target.rss_mb()
    cpu_before = target.cpu_seconds()
    config_path = work / f"{target.name}-sender.json"
    sender_config = dict(sender_config, out=str(work / f"{target.name}-sent.json"))
    config_path.write_text(json.dumps(sender_config))
    sender = children.start(
        [PYTHON, str(Path(__file__).resolve()), "--sender-config", str(config_path)],
        work / f"{target.name}-sender.log",
        stdout=subprocess.DEVNULL,
    )
    rss_peak = rss_idle
    while sender.poll() is None:
        time.sleep(0.5)
        rss_peak = max(rss_peak, target.rss_mb())
    if sender.returncode != 0:
        raise RuntimeError(f"{target.name} sender exited with {sender.returncode}; see {work}")
    sent = json.loads(Path(sender_config["out"]).read_text())
    print(f"  {target.name}: {sent['ok']} gifts sent, room at seq {sent['last_seq']}", flush=True)

    expects = [sent["last_seqs"][rooms[number % len(rooms)]] for number in range(len(viewers))]
    for (_tag, process), expect in zip(viewers, expects, strict=True):
        assert process.stdin is not None
        process.stdin.write(json.dumps({"expect": expect, "drain": arguments.drain}).encode() + b"\n")
        process.stdin.flush()
    deadline = time.monotonic() + arguments.drain + 120
    results = [read_json_line(process, deadline, tag) for tag, process in viewers]
    cpu_server = target.cpu_seconds() - cpu_before
    rss_end = target.rss_mb()
    for _tag, process in viewers:
        children.stop(process)
    return {
        "viewers": connected,
        "events_expected": sum(r["ready"] * expect for r, expect in zip(ready, expects, strict=True)),
        "connect_errors": dict(connect_errors),
        "sent": sent,
        "rss_idle_mb": rss_idle,
        "rss_peak_mb": max(rss_peak, rss_end),
        "server_cpu_s": cpu_server,
        "clients": results,
    }


def split(total: int, parts: int) -> list[range]:
    parts = max(1, min(parts, total))
    size, extra = divmod(total, parts)
    ranges, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        ranges.append(range(start, end))
        start = end
    return ranges


def giftstream_phase(
    arguments: argparse.Namespace, children: Children, work: Path, cleanup: list[Callable[[], None]]
) -> dict[str, Any]:
    print(
        f"Giftstream: fresh database {arguments.database}, {arguments.server}, DATABASE_POOL_SIZE={arguments.pool}, "
        f"{arguments.redis_url}",
        flush=True,
    )
    database_recreate(arguments.database)
    cleanup.append(lambda: database_drop(arguments.database))
    env = server_env(
        arguments.database,
        arguments.redis_url,
        GIFT_MERGE_WINDOW_MS=str(arguments.window_ms),
        # Our own channel-layer keys on a Redis others may be using.
        CHANNEL_LAYER_PREFIX=f"fanout{os.getpid()}",
        # As production runs it under an ASGI server (README "Scaling out"); without a pool every
        # request thread keeps its own connection and PostgreSQL soon refuses new ones.
        DATABASE_POOL_SIZE=str(arguments.pool),
    )
    total = int(arguments.rate * arguments.seconds)
    coins = total // arguments.senders + 100
    # A PK battle outlasts the run: the gifts, the drain, and the viewers' connecting.
    pk_seconds = min(3600, int(arguments.seconds + arguments.drain + 120 + 0.1 * arguments.viewers))
    seeded = seed(
        env,
        rooms=2 if arguments.pk else 1,
        senders=arguments.senders,
        coins=coins,
        out=work / "seed.json",
        goal=arguments.goal,
        pk_seconds=pk_seconds if arguments.pk else 0,
    )
    server = Server(arguments.server, arguments.port or free_port(), env, log=work / "server.log")
    cleanup.append(server.stop)
    server.start(timeout=60)
    assert server.process is not None
    target = Target("giftstream", server.port, server.process.pid, server.rss_mb)
    servers, send_port = [server], server.port
    if arguments.http_server:
        # The README's production layout: HTTP on a WSGI server, websockets on the ASGI one.
        http_server = Server(arguments.http_server, free_port(), env, log=work / "http-server.log")
        cleanup.append(http_server.stop)
        http_server.start(timeout=60)
        assert http_server.process is not None
        target.http_server_pid, send_port = http_server.process.pid, http_server.port
        servers.append(http_server)
    config = {
        "target": "giftstream",
        "port": send_port,
        "rooms": seeded["rooms"],
        "tokens": [person["token"] for person in seeded["senders"]],
        "rate": arguments.rate,
        "seconds": arguments.seconds,
        "connections": arguments.connections,
    }
    if arguments.publish_only:
        config.update(target="hubs", template=DEFAULT_EVENT, env={key: env[key] for key in PUBLISHER_ENV})
    try:
        return phase_run(target, arguments, children, work, config)
    finally:
        for running in servers:
            running.stop()


def reference_phase(
    arguments: argparse.Namespace, children: Children, work: Path, template: dict[str, Any]
) -> dict[str, Any]:
    port = free_port()
    print(f"Reference: bench/ws_reference.py on port {port}", flush=True)
    command = [PYTHON, str(BENCH / "ws_reference.py"), str(port), "--window-ms", str(arguments.window_ms)]
    command += ["--compression", arguments.compression]
    process = children.start(command, work / "reference.log", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    if not ready or process.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"the reference server did not start; see {work / 'reference.log'}")
    target = Target("reference", port, process.pid, lambda: group_rss_mb(process.pid))
    config = {
        "target": "reference",
        "port": port,
        "rooms": [ROOM],
        "tokens": [f"sender-{n}" for n in range(arguments.senders)],
        "rate": arguments.rate,
        "seconds": arguments.seconds,
        "template": template,
    }
    try:
        return phase_run(target, arguments, children, work, config)
    finally:
        children.stop(process)


# --- the report -----------------------------------------------------------------------------------


def histogram_percentile(histogram: Counter[int], fraction: float) -> float:
    """The same rank rule as common.percentile, on a histogram of whole milliseconds."""
    total = sum(histogram.values())
    if not total:
        return float("nan")
    rank = min(total - 1, int(fraction * total))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen > rank:
            return float(value)
    return float(max(histogram))


def summarize(phase: dict[str, Any], arguments: argparse.Namespace) -> dict[str, Any]:
    histogram: Counter[int] = Counter()
    pk_histogram: Counter[int] = Counter()
    messages: Counter[str] = Counter()
    tallies: Counter[str] = Counter()
    for client in phase["clients"]:
        histogram.update({int(ms): n for ms, n in client["latency_ms"].items()})
        pk_histogram.update({int(ms): n for ms, n in client.get("pk_latency_ms", {}).items()})
        messages.update(client["messages"])
        for key in ("missing", "skipped", "duplicates", "beyond", "out_of_order", "snapshots", "closed_early"):
            tallies[key] += client[key]
        tallies["lagging_at_end"] += client["lagging_at_end"]
    sent = phase["sent"]
    viewers = max(phase["viewers"], 1)
    seconds = max(sent["elapsed_s"], 1e-9)
    expected = phase["events_expected"]
    cpu_share = [c["cpu_s"] / max(c["wall_s"], 1e-9) * 100 for c in phase["clients"]]
    return {
        "viewers": phase["viewers"],
        "connect_errors": phase["connect_errors"],
        "ok": sent["ok"],
        "not_sent": sent["not_sent"],
        "statuses": sent["statuses"],
        "achieved_rate": sent["achieved_rate"],
        "last_seq": sent["last_seq"],
        "answer_p50": sent["answer_p50_ms"],
        "answer_p99": sent["answer_p99_ms"],
        "commit_p50": sent["commit_p50_ms"],
        "commit_p99": sent["commit_p99_ms"],
        "lag_max": sent["lag_max_ms"],
        "p50": histogram_percentile(histogram, 0.50),
        "p99": histogram_percentile(histogram, 0.99),
        "p999": histogram_percentile(histogram, 0.999),
        "pk_p50": histogram_percentile(pk_histogram, 0.50) if pk_histogram else float("nan"),
        "pk_p99": histogram_percentile(pk_histogram, 0.99) if pk_histogram else float("nan"),
        "max": float(max(histogram, default=float("nan"))),
        "events_expected": expected,
        "events_received": sum(histogram.values()),
        "lost": tallies["missing"],
        **{key: tallies[key] for key in tallies if key != "missing"},
        "msgs_per_viewer_s": sum(messages.values()) / viewers / seconds,
        "by_type": {kind: n / viewers / seconds for kind, n in sorted(messages.items())},
        "rss_idle": phase["rss_idle_mb"],
        "rss_peak": phase["rss_peak_mb"],
        "server_cpu_s": phase["server_cpu_s"],
        "client_cpu_max": max(cpu_share, default=0.0),
        "goal": histogram_percentile(histogram, 0.99) <= arguments.window_ms + 100
        and tallies["missing"] == 0
        and sum(histogram.values()) > 0,
    }


ROWS = [
    # label, key, format
    ("viewers connected", "viewers", "{:.0f}"),
    ("gifts answered 201", "ok", "{:.0f}"),
    ("gifts not sent: server behind", "not_sent", "{:.0f}"),
    ("achieved gifts/s", "achieved_rate", "{:.1f}"),
    ("room's last seq N", "last_seq", "{:.0f}"),
    ("sender lag max ms", "lag_max", "{:.1f}"),
    ("send->answer p50 ms", "answer_p50", "{:.1f}"),
    ("send->answer p99 ms", "answer_p99", "{:.1f}"),
    ("send->commit p50 ms", "commit_p50", "{:.1f}"),
    ("send->commit p99 ms", "commit_p99", "{:.1f}"),
    ("commit->receive p50 ms", "p50", "{:.0f}"),
    ("commit->receive p99 ms", "p99", "{:.0f}"),
    ("commit->receive p99.9 ms", "p999", "{:.0f}"),
    ("commit->receive max ms", "max", "{:.0f}"),
    ("pk msg change->receive p50 ms", "pk_p50", "{:.0f}"),
    ("pk msg change->receive p99 ms", "pk_p99", "{:.0f}"),
    ("events expected (viewers x N)", "events_expected", "{:.0f}"),
    ("events received (first copies)", "events_received", "{:.0f}"),
    ("lost (missing seqs)", "lost", "{:.0f}"),
    ("skipped by a snapshot", "skipped", "{:.0f}"),
    ("duplicate seqs", "duplicates", "{:.0f}"),
    ("out-of-order events", "out_of_order", "{:.0f}"),
    ("mid-run snapshots", "snapshots", "{:.0f}"),
    ("sockets closed by server", "closed_early", "{:.0f}"),
    ("viewers short of N at end", "lagging_at_end", "{:.0f}"),
    ("ws msgs / viewer / s", "msgs_per_viewer_s", "{:.2f}"),
    ("server RSS MB, viewers in", "rss_idle", "{:.1f}"),
    ("server RSS MB, peak", "rss_peak", "{:.1f}"),
    ("server CPU s while sending", "server_cpu_s", "{:.1f}"),
    ("busiest client process CPU %", "client_cpu_max", "{:.0f}"),
]


def table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    lines = []
    header = f"{'':32}" + "".join(f"{name:>14}" for name in names)
    if len(names) == 2:
        header += f"{'ratio':>10}"
    lines += [header, "-" * len(header)]
    rows = list(ROWS)
    kinds = sorted({kind for r in results.values() for kind in r["by_type"]})
    at = next(i for i, row in enumerate(rows) if row[1] == "msgs_per_viewer_s") + 1
    rows[at:at] = [(f"  '{kind}' msgs / viewer / s", ("by_type", kind), "{:.2f}") for kind in kinds]
    for label, key, fmt in rows:
        values = []
        for name in names:
            value = results[name]["by_type"].get(key[1], 0.0) if isinstance(key, tuple) else results[name][key]
            values.append(value)
        line = f"{label:32}" + "".join(f"{fmt.format(v):>14}" for v in values)
        if len(values) == 2:
            a, b = values
            ratio = a / b if isinstance(b, int | float) and b and not math.isnan(b) else float("nan")
            line += f"{'-' if math.isnan(ratio) else f'{ratio:.2f}x':>10}"
        lines.append(line)
    return "\n".join(lines)


def report(results: dict[str, dict[str, Any]], arguments: argparse.Namespace) -> None:
    print()
    print(
        f"Fan-out: {arguments.viewers} viewers in one room, {arguments.rate:g} gifts/s for {arguments.seconds:g} s, "
        f"merge window {arguments.window_ms} ms, {arguments.compression} compression, "
        f"{arguments.viewer_processes} viewer process(es)"
    )
    print("Latency is commit->receive: the viewer's read time minus the event's `at` (1 ms buckets).")
    print(table(results))
    print()
    budget = arguments.window_ms + 100
    for name, r in results.items():
        verdict = "meets" if r["goal"] else "MISSES"
        print(f"{name}: {verdict} the goal (p99 {r['p99']:.0f} ms <= {budget} ms, {r['lost']} lost)")
        if r["connect_errors"]:
            print(f"  connect errors: {r['connect_errors']}")
        if set(r["statuses"]) - {"201", NOT_SENT}:
            print(f"  sender answers: {r['statuses']}")
        if r["client_cpu_max"] > 85:
            print(f"  a viewer process used {r['client_cpu_max']:.0f}% CPU: latencies include client lag")


# --- the runner -----------------------------------------------------------------------------------


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0, help="gifts per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long gifts are sent")
    parser.add_argument("--server", choices=ASGI_SERVERS, default="uvicorn-1")
    parser.add_argument(
        "--http-server", choices=["gunicorn-2"], help="send the gifts to this WSGI server; viewers stay on --server"
    )
    parser.add_argument("--window-ms", type=int, default=int(os.environ.get("GIFT_MERGE_WINDOW_MS", "100")))
    parser.add_argument("--viewer-processes", type=int, default=0, help="default: one per 500 viewers")
    parser.add_argument("--compression", choices=["deflate", "none"], default="deflate")
    parser.add_argument("--senders", type=int, default=20, help="seeded people the gifts come from, in turn")
    parser.add_argument("--connections", type=int, default=16, help="sender's keep-alive HTTP connections")
    parser.add_argument("--pool", type=int, default=8, help="DATABASE_POOL_SIZE per server process")
    parser.add_argument("--drain", type=float, default=10.0, help="seconds viewers may take to reach the last seq")
    parser.add_argument("--goal", action="store_true", help="the room has a goal: a `goal` message per window")
    parser.add_argument(
        "--pk", action="store_true", help="two rooms in a PK battle, half the viewers in each, gifts to both in turn"
    )
    parser.add_argument("--only", choices=["both", "giftstream", "reference"], default="both")
    parser.add_argument(
        "--publish-only",
        action="store_true",
        help="Giftstream's events go straight to the channel layer, as a server publishes them after a commit: "
        "the fan-out without the sends",
    )
    parser.add_argument("--database", default="giftstream_bench_fanout")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"))
    parser.add_argument("--port", type=int, default=0, help="Giftstream's port; default: a free one")
    parser.add_argument("--keep", action="store_true", help="keep the logs directory")
    parser.add_argument("--sender-config", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.viewer_processes <= 0:
        arguments.viewer_processes = max(1, math.ceil(arguments.viewers / 500))
    return arguments


def terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    if arguments.sender_config:
        sender_main(arguments.sender_config)
        return 0

    print("$ " + shlex.join(sys.orig_argv), flush=True)
    print(f"machine: {machine()}", flush=True)
    # Ctrl-C and SIGTERM both end in the cleanup below, even when started from a shell that
    # ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate_as_interrupt)
    work = Path(tempfile.mkdtemp(prefix="giftstream-fanout-"))
    children = Children()
    cleanup: list[Callable[[], None]] = []
    failed = True
    try:
        results: dict[str, dict[str, Any]] = {}
        template = DEFAULT_EVENT
        if arguments.only in ("both", "giftstream"):
            phase = giftstream_phase(arguments, children, work, cleanup)
            results["giftstream"] = summarize(phase, arguments)
            template = phase["sent"]["template"] or DEFAULT_EVENT
        if arguments.only in ("both", "reference"):
            phase = reference_phase(arguments, children, work, template)
            results["reference"] = summarize(phase, arguments)
        report(results, arguments)
        failed = False
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", flush=True)
        return 130
    finally:
        # A second Ctrl-C must not leave a server or a database behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        children.stop_all()
        for step in reversed(cleanup):
            try:
                step()
            except Exception as error:  # keep cleaning up; say what could not be undone
                print(f"cleanup step failed: {error}", file=sys.stderr)
        if failed or arguments.keep:
            print(f"logs kept in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
