"""Load client, run as its own process so it never shares an interpreter with the server.

    python bench/load.py PORT SEED.json MODE CLIENTS SECONDS TAG [RECORD.jsonl]

MODE `spread`: every gift to a random one of the seeded rooms; `hot`: every gift to the first
room. Each of CLIENTS coroutines holds one keep-alive connection and sends one gift at a
time as a random seeded sender. MODE `batch`: each call is a signed SendDanmakuGifts of
BATCH_SIZE gifts from random seeded senders into a random room, as a business server relays
them. Prints one JSON line: gifts delivered, errors by status or code, latencies per call.
With RECORD, every answered request is appended as {"msg_id", "sender", "room", "status", "code"}:
the fault runs compare that record with the database.
"""

import asyncio
import hashlib
import json
import random
import secrets
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HttpConnection, percentile  # noqa: E402

BATCH_SIZE = 50


def signed_query(app: dict, action: str) -> str:
    """The query string of a server-API call, signed the way a business server signs it."""
    nonce, timestamp = secrets.token_hex(8), str(int(time.time()))
    signature = hashlib.md5(f"{app['app_id']}{nonce}{app['secret']}{timestamp}".encode()).hexdigest()
    return (
        f"Action={action}&AppId={app['app_id']}&SignatureNonce={nonce}&Timestamp={timestamp}"
        f"&Signature={signature}&SignatureVersion=2.0"
    )


async def send_batch(connection: HttpConnection, app: dict, room: str, senders: list, prefix: str) -> tuple[str, int]:
    """One SendDanmakuGifts call; returns (outcome, gifts delivered)."""
    gift_list = [
        {
            "UserInfo": {"UserId": sender["user_id"]},
            "GiftInfo": {"GiftId": "rose", "Value": 1, "Num": 1},
            "MsgId": f"{prefix}-{number}",
        }
        for number, sender in enumerate(senders)
    ]
    status, body = await connection.request(
        "POST", f"/api/v1/?{signed_query(app, 'SendDanmakuGifts')}", {"RoomId": room, "GiftList": gift_list}, {}
    )
    if status != 200 or body.get("Code") != 0:
        return f"{status}/{body.get('Code')}", 0
    results = body["Data"]["Results"]
    delivered = sum(1 for result in results if result["Result"] == 0)
    return ("batch-ok" if delivered == len(gift_list) else "batch-partial"), delivered


async def run(port: int, seed: dict, mode: str, clients: int, seconds: float, tag: str, record: Path | None) -> dict:
    senders = seed["senders"]
    rooms = seed["rooms"]
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    delivered = [0]  # gifts delivered by batch calls
    record_file = record.open("a", buffering=1) if record else None
    deadline = time.monotonic() + seconds

    async def client(number: int) -> None:
        rng = random.Random(f"{tag}-{number}")
        connection = HttpConnection(port)
        index = 0
        while time.monotonic() < deadline:
            sender = rng.choice(senders)
            room = rooms[0] if mode == "hot" else rng.choice(rooms)
            msg_id = f"{tag}-{number}-{index}"
            index += 1
            started = time.perf_counter()
            if mode == "batch":
                try:
                    outcome, gifts = await send_batch(
                        connection, seed["app"], room, rng.sample(senders, BATCH_SIZE), msg_id
                    )
                except (ConnectionError, OSError):
                    statuses["connection-error"] += 1
                    await asyncio.sleep(0.05)
                    continue
                statuses[outcome] += 1
                delivered[0] += gifts
                latencies.append(time.perf_counter() - started)
                continue
            try:
                status, body = await connection.request(
                    "POST",
                    f"/api/rooms/{room}/gifts/",
                    {"gift_id": "rose", "msg_id": msg_id},
                    {"Authorization": f"Token {sender['token']}"},
                )
            except (ConnectionError, OSError):
                statuses["connection-error"] += 1
                if record_file:
                    record_file.write(json.dumps({"msg_id": msg_id, "sender": sender["user_id"], "status": 0}) + "\n")
                await asyncio.sleep(0.05)
                continue
            elapsed = time.perf_counter() - started
            statuses[str(status)] += 1
            if status == 201:
                latencies.append(elapsed)
                delivered[0] += 1
            if record_file:
                line = {"msg_id": msg_id, "sender": sender["user_id"], "room": room, "status": status}
                line["code"] = body.get("code", body.get("result"))
                record_file.write(json.dumps(line) + "\n")
        await connection.close()

    started = time.monotonic()
    await asyncio.gather(*(client(number) for number in range(clients)))
    elapsed = time.monotonic() - started
    if record_file:
        record_file.close()
    return {
        "mode": mode,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "ok": delivered[0],
        "statuses": dict(statuses),
        "gifts_per_s": round(delivered[0] / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
    }


def main() -> None:
    port, seed_path, mode, clients, seconds, tag = sys.argv[1:7]
    record = Path(sys.argv[7]) if len(sys.argv) > 7 else None
    seed = json.loads(Path(seed_path).read_text())
    result = asyncio.run(run(int(port), seed, mode, int(clients), float(seconds), tag, record))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
