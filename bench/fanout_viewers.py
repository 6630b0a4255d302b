"""Viewer process of the fan-out benchmark: COUNT websocket viewers of one room, in one asyncio loop.

    python bench/fanout_viewers.py URL ORIGIN COUNT [--compression deflate|none] [--tag NAME]

Talks to bench/fanout.py over its standard streams, one JSON object per line:

- out `{"ready": connected, "failed": n, "errors": {...}}` once every viewer has connected and
  read its first message (the room snapshot), or failed to;
- in  `{"expect": N, "drain": SECONDS}` after the last gift: wait until every open viewer has
  seen seq N (or the drain time is up), close the sockets, and
- out the result: per-type message counts, the seq tally, and the latency histogram.

Per viewer it keeps a count per seq. A `snapshot` resets the baseline, as a client would: its
`seq` covers every earlier event, and the next expected seq is seq + 1. At the end, each seq
in (first snapshot's seq, N] was received once (good), never and not covered by a later
snapshot (missing), never but covered by a later snapshot (skipped), or more than once
(duplicates). An event whose seq is not the next expected one is counted as out of order.

A `pk` message's latency is its read time minus its `at`: when the battle's scores last
changed, stamped like an event's `at` inside the transaction that changed them.

Latency is taken for each first receipt of an event by a viewer: the wall-clock time the
message was read minus the event's `at` (the server's commit-time stamp, UTC ISO; same
machine, same clock). It is kept as a histogram in whole milliseconds rather than a list:
a full run is millions of (viewer, event) pairs.

Every viewer receives the same bytes for the same batch, so each distinct message text is
parsed once per process and the result reused: the client's own CPU stays low, leaving the
cores to the server being measured. The process's CPU time is reported so a saturated client
can be told apart from a slow server.
"""

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from datetime import datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

# How many viewers handshake at the same time: Giftstream reads the room from the database on
# connect, and a thousand at once would only measure the connect storm.
CONNECT_CONCURRENCY = 20
PARSED_CACHE_SIZE = 256


class Parsed:
    """What the tally needs from one message text."""

    __slots__ = ("kind", "seq", "seqs", "ats")

    def __init__(self, kind: str, seq: int | None = None, seqs: tuple[int, ...] = (), ats: tuple[float, ...] = ()):
        self.kind = kind
        self.seq = seq
        self.seqs = seqs
        self.ats = ats


class Parser:
    def __init__(self) -> None:
        self.cache: dict[str, Parsed] = {}
        self.at_seconds: dict[str, float] = {}

    def parse(self, text: str) -> Parsed:
        parsed = self.cache.get(text)
        if parsed is not None:
            return parsed
        message = json.loads(text)
        kind = message.get("type", "?")
        if kind == "gifts":
            events = message["events"]
            parsed = Parsed(kind, seqs=tuple(e["seq"] for e in events), ats=tuple(self._at(e["at"]) for e in events))
        elif kind == "snapshot":
            parsed = Parsed(kind, seq=message["seq"])
        elif kind == "pk":
            # A PK battle's scores: `at` is when they last changed (the commit of the gift that moved them).
            parsed = Parsed(kind, ats=(self._at(message["at"]),))
        else:
            parsed = Parsed(kind)
        if len(self.cache) >= PARSED_CACHE_SIZE:
            del self.cache[next(iter(self.cache))]
        self.cache[text] = parsed
        return parsed

    def _at(self, text: str) -> float:
        seconds = self.at_seconds.get(text)
        if seconds is None:
            seconds = self.at_seconds[text] = datetime.fromisoformat(text).timestamp()
        return seconds


class Viewer:
    def __init__(self, tally: "Tally"):
        self.tally = tally
        self.counts = bytearray(1024)  # receipts per seq (capped at 255)
        self.first_seq: int | None = None  # the first snapshot's seq: the expected range starts after it
        self.covered = 0  # highest seq a later snapshot covered
        self.next_seq = 0
        self.open = False
        self.connected = asyncio.Event()
        self.seen_everything = asyncio.Event()

    def receive(self, parsed: Parsed, now: float) -> None:
        tally = self.tally
        tally.messages[parsed.kind] += 1
        if parsed.kind == "gifts":
            counts = self.counts
            for seq, at in zip(parsed.seqs, parsed.ats, strict=True):
                if seq != self.next_seq:
                    tally.out_of_order += 1
                if seq >= len(counts):
                    counts.extend(bytes(max(seq + 1 - len(counts), len(counts))))
                seen = counts[seq]
                if seen == 0:
                    latency_ms = int((now - at) * 1000)
                    tally.latency_ms[latency_ms if latency_ms > 0 else 0] += 1
                if seen < 255:
                    counts[seq] = seen + 1
                if seq >= self.next_seq:
                    self.next_seq = seq + 1
        elif parsed.kind == "pk":
            latency_ms = int((now - parsed.ats[0]) * 1000)
            tally.pk_latency_ms[latency_ms if latency_ms > 0 else 0] += 1
        elif parsed.kind == "snapshot":
            assert parsed.seq is not None
            if self.first_seq is None:
                self.first_seq = parsed.seq
                self.connected.set()
            else:
                tally.snapshots += 1
                self.covered = max(self.covered, parsed.seq)
            self.next_seq = parsed.seq + 1
        if tally.expect is not None and self.next_seq > tally.expect:
            self.seen_everything.set()

    def settle(self, expect: int) -> None:
        """Add this viewer's seq tally for the expected range to the process totals."""
        tally = self.tally
        first = self.first_seq or 0
        counts = self.counts
        if len(counts) <= expect:
            counts.extend(bytes(expect + 1 - len(counts)))
        tally.beyond += sum(1 for seen in counts[expect + 1 :] if seen)
        if counts.count(1, first + 1, expect + 1) == expect - first:
            return  # every expected seq exactly once: the usual case, without a Python loop
        for seq in range(first + 1, expect + 1):
            seen = counts[seq]
            if seen == 1:
                continue
            if seen == 0:
                if seq <= self.covered:
                    tally.skipped += 1
                else:
                    tally.missing += 1
            else:
                tally.duplicates += seen - 1


class Tally:
    def __init__(self) -> None:
        self.messages: Counter[str] = Counter()
        self.latency_ms: Counter[int] = Counter()
        self.pk_latency_ms: Counter[int] = Counter()  # per `pk` message: read time minus its `at`
        self.out_of_order = 0
        self.snapshots = 0  # after the first, per viewer
        self.missing = 0
        self.skipped = 0
        self.duplicates = 0
        self.beyond = 0  # seqs above the expected last one
        self.closed_early = 0
        self.connect_errors: Counter[str] = Counter()
        self.expect: int | None = None


async def watch(
    viewer: Viewer,
    url: str,
    origin: str,
    compression: str | None,
    parser: Parser,
    gate: asyncio.Semaphore,
    stop: asyncio.Event,
) -> None:
    tally = viewer.tally
    connection: ClientConnection | None = None
    try:
        async with gate:
            connection = await connect(
                url,
                origin=origin,
                compression=compression,
                open_timeout=120,
                # A ping timeout under load would close viewers for the client's own lag.
                ping_interval=None,
                max_size=2**24,
                proxy=None,
            )
        viewer.open = True
        clock = time.time
        async for text in connection:
            viewer.receive(parser.parse(text), clock())
        # The server closed the socket cleanly; before the end of the run that is a lost viewer.
        if viewer.first_seq is None:
            tally.connect_errors["closed before the snapshot"] += 1
        elif not stop.is_set():
            tally.closed_early += 1
    except InvalidStatus as error:
        tally.connect_errors[f"http {error.response.status_code}"] += 1
    except (OSError, TimeoutError) as error:
        if viewer.open:
            tally.closed_early += 1
        else:
            tally.connect_errors[type(error).__name__] += 1
    except ConnectionClosed:
        if viewer.first_seq is None:
            tally.connect_errors["closed before the snapshot"] += 1
        elif not stop.is_set():
            tally.closed_early += 1
    finally:
        if not viewer.open or not stop.is_set():
            viewer.connected.set()
            viewer.seen_everything.set()
        if connection is not None:
            await connection.close()


async def read_line(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    line = await reader.readline()
    return json.loads(line) if line.strip() else None


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def main(url: str, origin: str, count: int, compression: str | None, tag: str) -> None:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)

    tally = Tally()
    parser = Parser()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    stop = asyncio.Event()
    viewers = [Viewer(tally) for _ in range(count)]
    tasks = [loop.create_task(watch(v, url, origin, compression, parser, gate, stop)) for v in viewers]

    await asyncio.gather(*(v.connected.wait() for v in viewers))
    ready = sum(1 for v in viewers if v.first_seq is not None)
    say({"tag": tag, "ready": ready, "failed": count - ready, "errors": dict(tally.connect_errors)})
    cpu_at_ready = sum(os.times()[:2])
    wall_at_ready = time.monotonic()
    messages_at_ready = tally.messages.copy()

    command = await read_line(commands)
    if command is None:  # the runner went away
        stop.set()
        for task in tasks:
            task.cancel()
        return
    started = time.monotonic()
    tally.expect = expect = command["expect"]
    for viewer in viewers:
        if viewer.next_seq > expect:
            viewer.seen_everything.set()
    pending = [asyncio.ensure_future(v.seen_everything.wait()) for v in viewers]
    done, not_done = await asyncio.wait(pending, timeout=command["drain"])
    for waiter in not_done:
        waiter.cancel()
    drained_in = time.monotonic() - started
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    for viewer in viewers:
        if viewer.first_seq is not None:
            viewer.settle(expect)
    lagging = sum(1 for v in viewers if v.first_seq is not None and v.next_seq <= expect)
    say(
        {
            "tag": tag,
            "viewers": ready,
            "messages": dict(tally.messages - messages_at_ready),
            "events_received": sum(tally.latency_ms.values()),
            "missing": tally.missing,
            "skipped": tally.skipped,
            "duplicates": tally.duplicates,
            "beyond": tally.beyond,
            "out_of_order": tally.out_of_order,
            "snapshots": tally.snapshots,
            "closed_early": tally.closed_early,
            "lagging_at_end": lagging,
            "drained_in_s": round(drained_in, 3),
            "cpu_s": round(sum(os.times()[:2]) - cpu_at_ready, 2),
            "wall_s": round(time.monotonic() - wall_at_ready, 2),
            "latency_ms": {str(ms): n for ms, n in sorted(tally.latency_ms.items())},
            "pk_latency_ms": {str(ms): n for ms, n in sorted(tally.pk_latency_ms.items())},
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("origin")
    parser.add_argument("count", type=int)
    parser.add_argument("--compression", choices=["deflate", "none"], default="deflate")
    parser.add_argument("--tag", default="viewers")
    arguments = parser.parse_args()
    compression = None if arguments.compression == "none" else arguments.compression
    asyncio.run(main(arguments.url, arguments.origin, arguments.count, compression, arguments.tag))
