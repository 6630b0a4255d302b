"""Gift throughput against pgbench, side by side in one run.

    python bench/throughput.py [--clients 16 64] [--seconds 20] [--server uvicorn-2] [--pool 8]
                               [--modes spread hot batch]

For each client count: `pgbench` (built-in TPC-B-like script, scale 10, same client count) on
the same PostgreSQL server, then Giftstream on a fresh database with 100 live rooms and 1,000
senders:

- spread: single gifts through POST /api/rooms/{id}/gifts/, random sender, random room;
- hot: the same, every gift into one room to one host (the worst case for row locks);
- batch: signed SendDanmakuGifts calls of 50 gifts each into random rooms.

The load clients run in their own processes (bench/load.py) so they never share an
interpreter with the server. Prints one table with gifts/s, latency and the ratios the
targets are stated in.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    PG_HOST,
    PG_USER,
    PYTHON,
    ROOT,
    Server,
    database_drop,
    database_recreate,
    group_cpu_seconds,
    machine,
    postgres_cpu_seconds,
    seed,
    server_env,
)

GIFTS_DATABASE = "gs_bench_throughput"
PGBENCH_DATABASE = "gs_bench_pgbench"
PORT = 8731
LOAD_PROCESSES = 2  # one client process per core keeps the client from being the bottleneck


def pgbench_tps(clients: int, seconds: int) -> float:
    """Transactions per second of pgbench's built-in TPC-B-like script, scale 10."""
    command = ["pgbench", "-h", PG_HOST, "-U", PG_USER, "-c", str(clients), "-j", "2", "-T", str(seconds), "-n"]
    out = subprocess.run([*command, PGBENCH_DATABASE], capture_output=True, text=True, check=True).stdout
    match = re.search(r"tps = ([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"pgbench printed no tps:\n{out}")
    return float(match.group(1))


def load_measured(server: Server, seed_file: Path, mode: str, clients: int, seconds: int, tag: str) -> dict:
    """`load`, plus the CPU the server and PostgreSQL spent per delivered gift."""
    server_before, postgres_before = group_cpu_seconds(server.process.pid), postgres_cpu_seconds()
    result = load(seed_file, mode, clients, seconds, tag)
    gifts = max(result["gifts_per_s"] * seconds, 1)
    result["server_cpu_ms"] = (group_cpu_seconds(server.process.pid) - server_before) / gifts * 1000
    result["postgres_cpu_ms"] = (postgres_cpu_seconds() - postgres_before) / gifts * 1000
    return result


def load(seed_file: Path, mode: str, clients: int, seconds: int, tag: str) -> dict:
    """Run CLIENTS clients split over LOAD_PROCESSES processes; merge their results."""
    processes = min(LOAD_PROCESSES, clients)
    shares = [clients // processes + (1 if index < clients % processes else 0) for index in range(processes)]
    runs = [
        subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "load.py"), str(PORT), str(seed_file), mode, str(share), str(seconds)]
            + [f"{tag}-p{index}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for index, share in enumerate(shares)
    ]
    results = [json.loads(run.communicate()[0].strip().splitlines()[-1]) for run in runs]
    statuses: dict[str, int] = {}
    for result in results:
        for status, count in result["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    return {
        "gifts_per_s": sum(result["gifts_per_s"] for result in results),
        # Each process reports its own percentiles; the worst of them is the honest summary.
        "p50_ms": max(result["p50_ms"] for result in results),
        "p99_ms": max(result["p99_ms"] for result in results),
        "statuses": statuses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--server", default="uvicorn-2")
    parser.add_argument("--pool", type=int, default=8, help="DATABASE_POOL_SIZE per server process")
    parser.add_argument("--modes", nargs="+", default=["spread", "hot", "batch"], choices=["spread", "hot", "batch"])
    args = parser.parse_args()

    print(f"$ python bench/{Path(__file__).name} {' '.join(sys.argv[1:])}")
    print(f"machine: {machine()}")
    print(f"server: {args.server}, DATABASE_POOL_SIZE={args.pool}, {args.seconds} s per run\n", flush=True)

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
        DATABASE_POOL_SIZE=str(args.pool),
        CHANNEL_LAYER_PREFIX=f"bench-throughput-{os.getpid()}",
        # Batch calls into the hot room would otherwise meet the per-room call limit, not the database.
        SERVER_API_ROOM_RATE="100000",
    )
    seed_file = Path(tempfile.mkdtemp()) / "seed.json"
    seed(env, rooms=100, senders=1000, coins=100_000_000, out=seed_file)

    server = Server(args.server, PORT, env)
    server.start()
    rows = []
    try:
        for clients in args.clients:
            tps = pgbench_tps(clients, args.seconds)
            row = {"clients": clients, "pgbench_tps": tps}
            for mode in args.modes:
                result = load_measured(
                    server, seed_file, mode, clients, args.seconds, f"{mode}-{clients}-{time.time_ns()}"
                )
                row[mode] = result
                errors = {status: n for status, n in result["statuses"].items() if status not in ("201", "batch-ok")}
                print(
                    f"  {clients:>3} clients {mode:<6} {result['gifts_per_s']:>8.1f} gifts/s  "
                    f"p50 {result['p50_ms']:>6.1f} ms  p99 {result['p99_ms']:>7.1f} ms  "
                    f"CPU/gift: server {result['server_cpu_ms']:.2f} ms, "
                    f"PostgreSQL {result['postgres_cpu_ms']:.2f} ms  "
                    f"errors {errors or 0}",
                    flush=True,
                )
            print(f"  {clients:>3} clients pgbench {tps:>7.1f} tps", flush=True)
            rows.append(row)
        rss = server.rss_mb()
    finally:
        server.stop()
        database_drop(GIFTS_DATABASE)
        database_drop(PGBENCH_DATABASE)

    print()
    header = (
        "| clients | pgbench tps | mode | gifts/s | p50 ms | p99 ms | server CPU ms/gift | PostgreSQL CPU ms/gift "
        "| gifts/s ÷ pgbench tps | vs spread |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        spread = row.get("spread", {}).get("gifts_per_s")
        for mode in args.modes:
            result = row[mode]
            ratio = result["gifts_per_s"] / row["pgbench_tps"]
            versus = f"{result['gifts_per_s'] / spread:.2f}" if spread and mode != "spread" else "-"
            print(
                f"| {row['clients']} | {row['pgbench_tps']:.0f} | {mode} | {result['gifts_per_s']:.0f} | "
                f"{result['p50_ms']:.1f} | {result['p99_ms']:.1f} | {result['server_cpu_ms']:.2f} | "
                f"{result['postgres_cpu_ms']:.2f} | {ratio:.2f} | {versus} |"
            )
    print(f"\nserver RSS at the end: {rss:.0f} MB")


if __name__ == "__main__":
    main()
