"""Gift throughput against pgbench, side by side in one run.

    python bench/throughput.py [--clients 16 64] [--seconds 20] [--server gunicorn-2] [--pool 16]
                               [--modes spread hot batch batch-audience]

For each client count: `pgbench` (built-in TPC-B-like script, scale 10, same client count) on
the same PostgreSQL server, then Giftstream on a fresh database with 100 live rooms and 1,000
senders:

- spread: single gifts through POST /api/rooms/{id}/gifts/, random sender, random room;
- hot: the same, every gift into one room to one host (the worst case for row locks);
- batch: signed SendDanmakuGifts calls of 50 gifts each into random rooms, from random
  senders: nearly every two calls at the same time share a sender, whose coins one of them
  waits for (the worst case for row locks between calls);
- batch-audience: the same calls, each from its room's own audience of 50 senders, as a
  business server relays a room's gifts (each sender also watches four neighbouring rooms);
- spread at ½ rate, after spread: the same sends at half the gifts/s spread reached, for
  the latency a sender sees on a server that is not saturated (three times as long).

The load comes from wrk (bench/wrk.py), CLIENTS connections over 2 threads, so the client
costs a small part of what the server does. Gifts/s counts the gifts the server paid (its
own /metrics), latency is wrk's per call (a batch call carries 50 gifts), and CPU per gift
is the server's (every worker) and PostgreSQL's (every backend) over the run divided by the
gifts paid. Prints one table with the ratios the targets are stated in.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import wrk  # noqa: E402
from common import (  # noqa: E402
    PG_HOST,
    PG_USER,
    Server,
    database_drop,
    database_recreate,
    machine,
    pool_size,
    postgres_cpu_seconds,
    seed,
    server_env,
)

GIFTS_DATABASE = "gs_bench_throughput"
BATCH_MODES = ["batch", "batch-audience"]
MODES = ["spread", "hot", *BATCH_MODES]
HALF = "spread at ½ rate"  # single sends at half the spread run's gifts/s: the latency target's load
PGBENCH_DATABASE = "gs_bench_pgbench"
PORT = 8731


def pgbench_measured(clients: int, seconds: int) -> tuple[float, float]:
    """pgbench's built-in TPC-B-like script, scale 10: (transactions/s, PostgreSQL CPU ms per transaction)."""
    command = ["pgbench", "-h", PG_HOST, "-U", PG_USER, "-c", str(clients), "-j", "2", "-T", str(seconds), "-n"]
    postgres_before = postgres_cpu_seconds()
    out = subprocess.run([*command, PGBENCH_DATABASE], capture_output=True, text=True, check=True).stdout
    postgres_cpu = postgres_cpu_seconds() - postgres_before
    tps = re.search(r"tps = ([\d.]+)", out)
    transactions = re.search(r"number of transactions actually processed: (\d+)", out)
    if tps is None or transactions is None:
        raise RuntimeError(f"pgbench printed no tps:\n{out}")
    return float(tps.group(1)), postgres_cpu / max(int(transactions.group(1)), 1) * 1000


def load_measured(
    server: Server, seed_data: dict, workdir: Path, mode: str, clients: int, seconds: int, *, delay_ms: int = 0
) -> dict:
    """One wrk run of MODE with CLIENTS connections: gifts/s, latency per call, CPU per paid gift.

    With `delay_ms` (single sends only) each connection pauses that long on average after each answer.
    """
    tag = f"{mode}-{clients}-{time.time_ns()}"
    rooms = seed_data["rooms"][:1] if mode == "hot" else seed_data["rooms"]
    script = workdir / f"{tag}.lua"
    if mode in BATCH_MODES:
        # More signed calls than the server could take in the time: none is ever reused.
        wrk.batch_script(script, seed_data, rooms, tag, calls=200 * seconds, audience=mode == "batch-audience")
    else:
        wrk.send_script(script, seed_data, rooms, tag, delay_ms=delay_ms)
    result = wrk.measured_run(server, connections=clients, seconds=seconds, script=script)
    paid = max(result["paid"], 1)
    result["gifts_per_s"] = result["paid"] / result["elapsed"]
    result["server_cpu_ms"] = result["server_cpu"] / paid * 1000
    result["postgres_cpu_ms"] = result["postgres_cpu"] / paid * 1000
    return result


def half_rate_measured(server: Server, seed_data: dict, workdir: Path, clients: int, seconds: int, most: float) -> dict:
    """Single sends into random rooms at about half of `most` gifts/s: the latency a sender sees there.

    wrk has no fixed rate; each connection pauses between its sends instead. A connection's
    cycle is its answer's latency plus its pause, so a short first run measures the latency
    and the pause is set to what remains of CLIENTS / rate. wrk opens every connection at
    once and each sends its first request at once, so the first CLIENTS requests queue
    behind each other: the measured run lasts three times as long, so that they weigh less
    in the 99th percentile.
    """
    cycle_ms = 1000 * clients / (most / 2)
    probe = load_measured(server, seed_data, workdir, "spread", clients, 5, delay_ms=int(cycle_ms))
    delay_ms = max(1, int(cycle_ms - probe["p50_ms"]))
    return load_measured(server, seed_data, workdir, "spread", clients, 3 * seconds, delay_ms=delay_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--server", default="gunicorn-2")
    parser.add_argument(
        "--pool", type=int, help="DATABASE_POOL_SIZE per server process (default: as the README runs the server)"
    )
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    args = parser.parse_args()
    wrk.ensure_installed()
    pool = args.pool or pool_size(args.server)

    print(f"$ python bench/{Path(__file__).name} {' '.join(sys.argv[1:])}")
    print(f"machine: {machine()}")
    print(f"server: {args.server}, DATABASE_POOL_SIZE={pool}, {args.seconds} s per run\n", flush=True)

    database_recreate(PGBENCH_DATABASE)
    subprocess.run(
        ["pgbench", "-h", PG_HOST, "-U", PG_USER, "-i", "-s", "10", "-q", PGBENCH_DATABASE],
        check=True,
        capture_output=True,
    )
    database_recreate(GIFTS_DATABASE)
    env = server_env(
        GIFTS_DATABASE,
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3"),
        DATABASE_POOL_SIZE=str(pool),
        CHANNEL_LAYER_PREFIX=f"bench-throughput-{os.getpid()}",
        # Batch calls into the hot room would otherwise meet the per-room call limit, not the database.
        SERVER_API_ROOM_RATE="100000",
        METRICS_TOKEN=wrk.METRICS_TOKEN,
    )
    workdir = Path(tempfile.mkdtemp())
    seed_data = seed(env, rooms=100, senders=1000, coins=100_000_000, out=workdir / "seed.json")
    metrics_dir = workdir / "metrics"  # every worker writes here; a scrape adds them up
    metrics_dir.mkdir()
    server = Server(args.server, PORT, {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    server.start()
    rows = []
    try:
        for clients in args.clients:
            tps, pgbench_cpu_ms = pgbench_measured(clients, args.seconds)
            row = {"clients": clients, "pgbench_tps": tps, "pgbench_cpu_ms": pgbench_cpu_ms}
            for mode in args.modes:
                result = load_measured(server, seed_data, workdir, mode, clients, args.seconds)
                row[mode] = result
                report(clients, mode, result)
                if mode == "spread":
                    row[HALF] = half_rate_measured(
                        server, seed_data, workdir, clients, args.seconds, result["gifts_per_s"]
                    )
                    report(clients, HALF, row[HALF])
            print(
                f"  {clients:>3} clients pgbench {tps:>7.1f} tps, "
                f"PostgreSQL CPU {pgbench_cpu_ms:.2f} ms per transaction",
                flush=True,
            )
            rows.append(row)
        rss = server.rss_mb()
    finally:
        server.stop()
        database_drop(GIFTS_DATABASE)
        database_drop(PGBENCH_DATABASE)

    print()
    header = (
        "| clients | pgbench tps | pgbench: PostgreSQL CPU ms/txn | mode | gifts/s | p50 ms | p99 ms "
        "| server CPU ms/gift | PostgreSQL CPU ms/gift "
        "| gifts per batch | gifts/s ÷ pgbench tps | vs spread |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        spread = row.get("spread", {}).get("gifts_per_s")
        for mode in [*args.modes, HALF] if spread else args.modes:
            result = row[mode]
            ratio = result["gifts_per_s"] / row["pgbench_tps"]
            versus = f"{result['gifts_per_s'] / spread:.2f}" if spread and mode != "spread" else "-"
            print(
                f"| {row['clients']} | {row['pgbench_tps']:.0f} | {row['pgbench_cpu_ms']:.2f} | {mode} "
                f"| {result['gifts_per_s']:.0f} | "
                f"{result['p50_ms']:.1f} | {result['p99_ms']:.1f} | {result['server_cpu_ms']:.2f} | "
                f"{result['postgres_cpu_ms']:.2f} | {result['per_batch']:.1f} | {ratio:.2f} | {versus} |"
            )
    print(f"\nserver RSS at the end: {rss:.0f} MB")


def report(clients: int, mode: str, result: dict) -> None:
    print(
        f"  {clients:>3} clients {mode:<14} {result['gifts_per_s']:>8.1f} gifts/s  "
        f"p50 {result['p50_ms']:>6.1f} ms  p99 {result['p99_ms']:>7.1f} ms  "
        f"CPU/gift: server {result['server_cpu_ms']:.2f} ms, "
        f"PostgreSQL {result['postgres_cpu_ms']:.2f} ms  gifts per write batch {result['per_batch']:.1f}  "
        f"non-2xx {result['non_2xx']}  refused gifts {result['refused']}"
        + (f"  socket errors: {result['socket_errors']}" if result["socket_errors"] else ""),
        flush=True,
    )


if __name__ == "__main__":
    main()
