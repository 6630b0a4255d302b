"""Gift load from wrk, a C HTTP client far cheaper per request than the server it loads.

The benchmarks drive the server with wrk and a Lua script per kind of load, so what they
measure is the server and not the client (on a no-op view a Python asyncio client reached
970 requests/s where wrk reached 1,303). What wrk cannot tell, how many gifts were paid and how
many went into each write batch, the server's own /metrics tells (`measured_run`).

- `send_script`: single REST sends, POST /api/rooms/{id}/gifts/, from a random sender of the
  seed (with its token) into a random room of `rooms`, every request a new msg_id; as fast
  as the server answers, or with a pause between a connection's sends for a steady rate.
- `batch_script`: SendDanmakuGifts calls of BATCH_SIZE gifts into a random room, each call
  signed ahead of time with its own nonce (wrk's Lua has no MD5). The gifts come from random
  senders of the whole seed, or (`audience=True`) from the room's own audience: AUDIENCE
  senders, a window of the seed's list that starts further along for each room, so each
  sender also watches the neighbouring rooms.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common import ROOT, Server, group_cpu_seconds, postgres_cpu_seconds

BATCH_SIZE = 50
AUDIENCE = 50  # senders in a room's audience, for batch calls by audience
METRICS_TOKEN = "bench-metrics"  # set as the server's METRICS_TOKEN so the bench may scrape it
THREADS = 2

# Every script starts so: each wrk thread knows its number (`thread`) and counts its requests
# (`sent`), which together make every MsgId of a run unique.
THREADS_NUMBERED = """
local next_thread = 0
local sent = 0

function setup(thread)
  thread:set("thread", next_thread)
  next_thread = next_thread + 1
end
"""

SEND_SCRIPT = (
    THREADS_NUMBERED
    + """
local tokens = {%(tokens)s}
local rooms = {%(rooms)s}

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
)

# Appended to SEND_SCRIPT to send at a steady rate: each connection waits a random time
# (DELAY_MS on average) after each answer before its next request.
DELAY_SCRIPT = """
function delay()
  return math.random(0, 2 * %(delay_ms)d)
end
"""

BATCH_SCRIPT = (
    THREADS_NUMBERED
    + """
local queries = {%(queries)s}
local senders = {%(senders)s}
local rooms = {%(rooms)s}

-- A sender of the call's gifts: anyone (audience 0), or one of the room's AUDIENCE viewers,
-- who start `stride` further along the senders for each room.
local audience = %(audience)d
local stride = math.max(1, math.floor(#senders / #rooms))

local function sender_in(room)
  if audience == 0 then
    return senders[math.random(#senders)]
  end
  return senders[((room - 1) * stride + math.random(0, audience - 1)) %% #senders + 1]
end

function request()
  sent = sent + 1
  -- The threads take turns through the signed queries: each nonce is used once.
  local query = queries[(sent - 1) * %(threads)d + thread + 1]
  local room = math.random(#rooms)
  local gifts = {}
  for number = 1, %(size)d do
    gifts[number] = '{"UserInfo": {"UserId": "' .. sender_in(room) .. '"}, '
      .. '"GiftInfo": {"GiftId": "rose", "Value": 1, "Num": 1}, '
      .. '"MsgId": "%(tag)s-' .. thread .. '-' .. sent .. '-' .. number .. '"}'
  end
  local body = '{"RoomId": "' .. rooms[room] .. '", "GiftList": [' .. table.concat(gifts, ", ") .. ']}'
  return wrk.format("POST", "/api/v1/?" .. query, {["Content-Type"] = "application/json"}, body)
end
"""
)


def lua_list(values: list[str]) -> str:
    return ", ".join(f'"{value}"' for value in values)


def send_script(path: Path, seed: dict, rooms: list[str], tag: str, *, delay_ms: int = 0) -> Path:
    """A script of single sends; with `delay_ms`, each connection pauses that long on average between them."""
    tokens = lua_list([sender["token"] for sender in seed["senders"]])
    script = SEND_SCRIPT % {"tokens": tokens, "rooms": lua_list(rooms), "tag": tag}
    path.write_text(script + (DELAY_SCRIPT % {"delay_ms": delay_ms} if delay_ms else ""))
    return path


def batch_script(path: Path, seed: dict, rooms: list[str], tag: str, calls: int, *, audience: bool = False) -> Path:
    """A script for at most `calls` calls; any call beyond them reuses a nonce and is refused.

    With `audience`, each call's gifts come from the room's own AUDIENCE senders rather than
    from all of them.
    """
    app = seed["app"]
    queries = []
    for _ in range(calls):
        nonce, timestamp = secrets.token_hex(8), str(int(time.time()))
        signature = hashlib.md5(f"{app['app_id']}{nonce}{app['secret']}{timestamp}".encode()).hexdigest()  # noqa: S324
        queries.append(
            f"Action=SendDanmakuGifts&AppId={app['app_id']}&SignatureNonce={nonce}&Timestamp={timestamp}"
            f"&Signature={signature}&SignatureVersion=2.0"
        )
    senders = lua_list([sender["user_id"] for sender in seed["senders"]])
    path.write_text(
        BATCH_SCRIPT
        % {
            "queries": lua_list(queries),
            "senders": senders,
            "rooms": lua_list(rooms),
            "tag": tag,
            "threads": THREADS,
            "size": BATCH_SIZE,
            "audience": AUDIENCE if audience else 0,
        }
    )
    return path


def ensure_installed() -> None:
    if shutil.which("wrk") is None:
        subprocess.run(["bash", str(ROOT / "scripts" / "install-wrk.sh")], check=False)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed and scripts/install-wrk.sh could not install it")


def run(port: int, path: str, *, connections: int, seconds: int, script: Path | None = None) -> dict:
    """One wrk run: requests/s, latency percentiles in ms, non-2xx answers, socket errors."""
    # A batch call of 50 gifts may take seconds under load: wrk would count it an error after 2.
    command = ["wrk", "-t", str(THREADS), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "30s", "--latency"]
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
        "p50_ms": _percentile_ms(out, "50%"),
        "p99_ms": _percentile_ms(out, "99%"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def _percentile_ms(out: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s|m)\b", out, re.MULTILINE)
    if match is None:
        return float("nan")
    return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[match.group(2)]


def measured_run(server: Server, *, connections: int, seconds: int, script: Path | None) -> dict:
    """One wrk run (`run`) against SERVER, with what it cost and what the server counted meanwhile.

    Adds `elapsed` s; `server_cpu` s (every worker) and `postgres_cpu` s (every backend);
    and from the server's /metrics the gifts `paid`, the gifts `refused` and the gifts
    `per_batch` it wrote. Without a script, wrk asks for GET /healthz; a script chooses
    each request's path itself.
    """
    totals_before = _server_totals(server.port)
    server_before, postgres_before = group_cpu_seconds(server.process.pid), postgres_cpu_seconds()
    started = time.monotonic()
    result = run(server.port, "/healthz", connections=connections, seconds=seconds, script=script)
    result["elapsed"] = time.monotonic() - started
    result["server_cpu"] = group_cpu_seconds(server.process.pid) - server_before
    result["postgres_cpu"] = postgres_cpu_seconds() - postgres_before
    totals = _server_totals(server.port)
    result["paid"] = totals["paid"] - totals_before["paid"]
    result["refused"] = int(totals["decided"] - totals_before["decided"] - result["paid"])
    batches = totals["batches"] - totals_before["batches"]
    result["per_batch"] = (totals["batch_gifts"] - totals_before["batch_gifts"]) / batches if batches else 0.0
    return result


def _server_totals(port: int) -> dict[str, float]:
    """From the server's /metrics (every process's): gifts decided and paid, write batches and their gifts so far."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()

    def value(pattern: str) -> float:
        match = re.search(rf"^{pattern} (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    decided = sum(float(found) for found in re.findall(r"^giftstream_gifts_total\{[^}]*\} (\S+)$", text, re.MULTILINE))
    return {
        "decided": decided,
        "paid": value(r'giftstream_gifts_total\{result="0"\}'),
        "batches": value("giftstream_write_batch_gifts_count"),
        "batch_gifts": value("giftstream_write_batch_gifts_sum"),
    }
