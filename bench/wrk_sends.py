"""REST sends under wrk, beside each server's own no-op floor, in one run.

    python bench/wrk_sends.py [--servers gunicorn-2 uvicorn-2] [--connections 32] [--seconds 10]

wrk is a C client (installed by scripts/install-wrk.sh), far cheaper per request than the
server it loads, so the figures are the server's and not the client's. For each server, on
a fresh database with 100 live rooms and 1,000 senders:

- floor: GET /healthz, a DRF view that touches nothing: what the server and the
  framework cost per request before any work;
- spread: POST /api/rooms/{id}/gifts/ from a random sender into a random room, every
  request a new msg_id (a Lua script, bench/wrk.py);
- hot: the same, every gift into one room.

Prints requests/s, wrk's latency percentiles, the non-2xx count, the server's and
PostgreSQL's CPU per request, and how many sends the server's group commit wrote per
batch (from its /metrics).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import wrk  # noqa: E402
from common import (  # noqa: E402
    Server,
    database_drop,
    database_recreate,
    machine,
    pool_size,
    seed,
    server_env,
)

DATABASE = "gs_bench_http"
PORT = 8741


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", nargs="+", default=["gunicorn-2", "uvicorn-2"])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--pool", type=int, help="DATABASE_POOL_SIZE per server process (default: as the README runs the server)"
    )
    args = parser.parse_args()
    wrk.ensure_installed()

    print(f"$ python bench/{Path(__file__).name} {' '.join(sys.argv[1:])}")
    print(f"machine: {machine()}")
    print(f"wrk: {wrk.THREADS} threads, {args.connections} connections, {args.seconds} s per run\n", flush=True)

    database_recreate(DATABASE)
    env = server_env(
        DATABASE,
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3"),
        CHANNEL_LAYER_PREFIX=f"bench-http-{os.getpid()}",
        METRICS_TOKEN=wrk.METRICS_TOKEN,
    )
    workdir = Path(tempfile.mkdtemp())
    data = seed(env, rooms=100, senders=1000, coins=100_000_000, out=workdir / "seed.json")
    rows = []
    try:
        for name in args.servers:
            metrics_dir = workdir / f"metrics-{name}"  # every worker writes here; a scrape adds them up
            metrics_dir.mkdir()
            pool = str(args.pool or pool_size(name))
            server_environment = {**env, "DATABASE_POOL_SIZE": pool, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
            server = Server(name, PORT, server_environment)
            server.start()
            try:
                runs: dict[str, Path | None] = {"floor": None}
                for mode, rooms in (("spread", data["rooms"]), ("hot", data["rooms"][:1])):
                    tag = f"{name}-{mode}-{time.time_ns()}"
                    runs[mode] = wrk.send_script(workdir / f"{name}-{mode}.lua", data, rooms, tag)
                for mode, script in runs.items():
                    result = wrk.measured_run(server, connections=args.connections, seconds=args.seconds, script=script)
                    requests = max(result["per_s"] * args.seconds, 1)
                    result["cpu_ms"] = result["server_cpu"] / requests * 1000
                    result["postgres_cpu_ms"] = result["postgres_cpu"] / requests * 1000
                    rows.append((name, mode, result))
                    print(
                        f"  {name:<11} {mode:<6} {result['per_s']:>8.0f} req/s  p50 {result['p50_ms']:>7.1f} ms  "
                        f"p99 {result['p99_ms']:>7.1f} ms  non-2xx {result['non_2xx']}  "
                        f"CPU/req: server {result['cpu_ms']:.2f} ms, PostgreSQL {result['postgres_cpu_ms']:.2f} ms  "
                        f"sends per write batch {result['per_batch']:.2f}"
                        + (f"  socket errors: {result['socket_errors']}" if result["socket_errors"] else ""),
                        flush=True,
                    )
            finally:
                server.stop()
    finally:
        database_drop(DATABASE)

    header = (
        "| server | run | req/s | p50 ms | p99 ms | non-2xx | server CPU ms/req | PostgreSQL CPU ms/req "
        "| ÷ floor | sends per batch |"
    )
    print(f"\n{header}\n|" + "---|" * (header.count("|") - 1))
    floors = {name: result["per_s"] for name, mode, result in rows if mode == "floor"}
    for name, mode, result in rows:
        per_batch = f"{result['per_batch']:.2f}" if result["per_batch"] else "-"
        print(
            f"| {name} | {mode} | {result['per_s']:.0f} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} "
            f"| {result['non_2xx']} | {result['cpu_ms']:.2f} | {result['postgres_cpu_ms']:.2f} "
            f"| {result['per_s'] / floors[name]:.2f} | {per_batch} |"
        )
    print(f"\nseed: {json.dumps({'rooms': len(data['rooms']), 'senders': len(data['senders'])})}")


if __name__ == "__main__":
    main()
