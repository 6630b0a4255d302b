"""REST sends under wrk, beside each server's own no-op floor, in one run.

    python bench/wrk_sends.py [--servers gunicorn-2 uvicorn-2] [--connections 32] [--seconds 10]

wrk is a C client (installed by scripts/install-wrk.sh), far cheaper per request than the
server it loads, so the figures are the server's and not the client's. For each server, on
a fresh database with 100 live rooms and 1,000 senders:

- floor: GET /healthz, a DRF view that touches nothing: what the server and the
  framework cost per request before any work;
- spread: POST /api/rooms/{id}/gifts/ from a random sender into a random room, every
  request a new msg_id (a Lua script);
- hot: the same, every gift into one room.

Prints requests/s, wrk's latency percentiles, the non-2xx count, and the server's CPU per
request.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Server, database_drop, database_recreate, group_cpu_seconds, machine, seed, server_env  # noqa: E402

DATABASE = "gs_bench_http"
PORT = 8741

SEND_SCRIPT = """
local tokens = {%(tokens)s}
local rooms = {%(rooms)s}
local next_thread = 0
local sent = 0

function setup(thread)
  thread:set("thread", next_thread)
  next_thread = next_thread + 1
end

function request()
  sent = sent + 1
  local body = '{"gift_id": "rose", "msg_id": "%(tag)s-' .. thread .. '-' .. sent .. '"}'
  local headers = {
    ["Authorization"] = "Token " .. tokens[math.random(#tokens)],
    ["Content-Type"] = "application/json",
  }
  return wrk.format("POST", "/api/rooms/" .. rooms[math.random(#rooms)] .. "/gifts/", headers, body)
end
"""


def lua_list(values: list[str]) -> str:
    return ", ".join(f'"{value}"' for value in values)


def wrk(port: int, path: str, *, connections: int, seconds: int, script: Path | None = None) -> dict:
    command = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    out = subprocess.run([*command, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "per_s": float(rate.group(1)),
        "p50": _percentile(out, "50%"),
        "p99": _percentile(out, "99%"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def _percentile(out: str, label: str) -> str:
    match = re.search(rf"^\s+{re.escape(label)}\s+(\S+)", out, re.MULTILINE)
    return match.group(1) if match else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", nargs="+", default=["gunicorn-2", "uvicorn-2"])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--pool", type=int, default=8, help="DATABASE_POOL_SIZE per server process")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        subprocess.run(["bash", str(ROOT / "scripts" / "install-wrk.sh")], check=False)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed and scripts/install-wrk.sh could not install it")

    print(f"$ python bench/{Path(__file__).name} {' '.join(sys.argv[1:])}")
    print(f"machine: {machine()}")
    print(f"wrk: 2 threads, {args.connections} connections, {args.seconds} s per run\n", flush=True)

    database_recreate(DATABASE)
    env = server_env(
        DATABASE,
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3"),
        DATABASE_POOL_SIZE=str(args.pool),
        CHANNEL_LAYER_PREFIX=f"bench-http-{os.getpid()}",
    )
    workdir = Path(tempfile.mkdtemp())
    data = seed(env, rooms=100, senders=1000, coins=100_000_000, out=workdir / "seed.json")
    tokens = lua_list([sender["token"] for sender in data["senders"]])
    rows = []
    try:
        for name in args.servers:
            server = Server(name, PORT, env)
            server.start()
            try:
                runs = {"floor": ("/healthz", None)}
                for mode, rooms in (("spread", data["rooms"]), ("hot", data["rooms"][:1])):
                    script = workdir / f"{name}-{mode}.lua"
                    tag = f"{name}-{mode}-{time.time_ns()}"
                    script.write_text(SEND_SCRIPT % {"tokens": tokens, "rooms": lua_list(rooms), "tag": tag})
                    runs[mode] = ("/healthz", script)  # the script chooses the path
                for mode, (path, script) in runs.items():
                    before = group_cpu_seconds(server.process.pid)
                    result = wrk(PORT, path, connections=args.connections, seconds=args.seconds, script=script)
                    cpu = group_cpu_seconds(server.process.pid) - before
                    result["cpu_ms"] = cpu / max(result["per_s"] * args.seconds, 1) * 1000
                    rows.append((name, mode, result))
                    print(
                        f"  {name:<11} {mode:<6} {result['per_s']:>8.0f} req/s  p50 {result['p50']:>8}  "
                        f"p99 {result['p99']:>8}  non-2xx {result['non_2xx']}  server CPU/req {result['cpu_ms']:.2f} ms"
                        + (f"  socket errors: {result['socket_errors']}" if result["socket_errors"] else ""),
                        flush=True,
                    )
            finally:
                server.stop()
    finally:
        database_drop(DATABASE)

    print("\n| server | run | req/s | p50 | p99 | non-2xx | server CPU ms/req | ÷ floor |")
    print("|---|---|---|---|---|---|---|---|")
    floors = {name: result["per_s"] for name, mode, result in rows if mode == "floor"}
    for name, mode, result in rows:
        print(
            f"| {name} | {mode} | {result['per_s']:.0f} | {result['p50']} | {result['p99']} | {result['non_2xx']} "
            f"| {result['cpu_ms']:.2f} | {result['per_s'] / floors[name]:.2f} |"
        )
    print(f"\nseed: {json.dumps({'rooms': len(data['rooms']), 'senders': len(data['senders'])})}")


if __name__ == "__main__":
    main()
