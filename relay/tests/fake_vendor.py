"""A real local HTTP server that answers SendDanmakuGifts as ZEGO's MiniGameEngine documents it.

It checks what ZEGO checks (the md5 signature over AppId + SignatureNonce + ServerSecret +
Timestamp, a Timestamp within 600 s, a nonce used once, the body's fields, among them an
http or https Avatar of at most 1024 bytes, and the MsgId format), keeps the first result
of every MsgId as ZEGO does for 24 hours, and records every call. Tests script what it
does next: an HTTP status, a Code, a broken body, a slow answer, a Result per user, or a
MsgId left out of Results.

Run as `python -m relay.tests.fake_vendor APP_ID SECRET` it serves until killed and prints
its URL (used by the relay's process tests and the benchmark).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MSG_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
USER_ID = re.compile(r"[0-9A-Za-z_-]{1,48}")
AVATAR = re.compile(r"https?://\S+", re.IGNORECASE)


@dataclass
class Scripted:
    """What the vendor does with the next call, instead of answering normally."""

    status: int = 200
    code: int | None = None  # a Code other than 0 for the whole call
    raw: bytes | None = None  # a body sent as is (HTML, truncated JSON, garbage)
    delay_s: float = 0.0  # answered after this long (the normal answer, unless more is scripted)
    drip_s: float = 0.0  # the body sent a few bytes at a time over this long
    omit: int = 0  # leave the last `omit` MsgIds out of Results
    results: dict[int, tuple[int, str]] = field(default_factory=dict)  # GiftList index -> (Result, Msg)


@dataclass
class Call:
    started: float
    finished: float
    room_id: str
    mini_game_id: str
    gift_list: list[dict[str, Any]]
    answered_code: int | None


class FakeVendor:
    def __init__(self, app_id: str = "1234567", secret: str = "vendor-secret"):
        self.app_id, self.secret = app_id, secret
        self.script: deque[Scripted] = deque()
        self.calls: list[Call] = []
        # MsgId -> (its content as first sent, its result): ZEGO answers a repeated MsgId with the first result.
        self.first_results: dict[str, tuple[str, tuple[int, str]]] = {}
        # MsgIds sent again with different content: ZEGO would silently keep the first; a relay must never do it.
        self.content_changed: list[str] = []
        # Per UserId, the Result the game gives their gifts (say 10003, user not in game).
        self.user_results: dict[str, tuple[int, str]] = {}
        # MsgId -> (wall-clock time it first arrived, its Timestamp in ms): what bench/relay.py reads at /stats.
        self.first_seen: dict[str, tuple[float, int]] = {}
        self.in_flight: dict[str, int] = {}
        self.overlaps: list[str] = []  # rooms called twice at once
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeVendor:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def then(self, **scripted: Any) -> FakeVendor:
        self.script.append(Scripted(**scripted))
        return self

    def delivered_msg_ids(self) -> list[str]:
        """Every MsgId the game took (Result 0), in the order it first took them."""
        return [msg_id for msg_id, (_, (result, _)) in self.first_results.items() if result == 0]

    # --- the HTTP side ----------------------------------------------------------------------------

    def _handler(self):
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, payload, drip_s = vendor.answer(self.path, body)
                content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if not drip_s:
                    self.wfile.write(content)
                    return
                pieces = 20
                step = max(len(content) // pieces, 1)
                for start in range(0, len(content), step):
                    self.wfile.write(content[start : start + step])
                    self.wfile.flush()
                    time.sleep(drip_s / pieces)

            def do_GET(self):  # noqa: N802 - http.server's naming
                with vendor.lock:
                    stats = {"calls": len(vendor.calls), "first_seen": vendor.first_seen}
                content = json.dumps(stats).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format, *args):
                pass

        return Handler

    def answer(self, path: str, body: bytes) -> tuple[int, Any, float]:
        started, arrived = time.monotonic(), time.time()
        scripted = self.script.popleft() if self.script else Scripted()
        request_id = uuid.uuid4().hex
        query = {name: values[-1] for name, values in parse_qs(urlsplit(path).query).items()}
        try:
            request = json.loads(body)
        except ValueError:
            request = {}
        room_id = request.get("RoomId", "") if isinstance(request, dict) else ""
        with self.lock:
            self.in_flight[room_id] = self.in_flight.get(room_id, 0) + 1
            if self.in_flight[room_id] > 1:
                self.overlaps.append(room_id)
        try:
            if scripted.delay_s:
                time.sleep(scripted.delay_s)
            status, payload = self._decide(query, request, scripted, request_id)
            if isinstance(payload, dict) and payload.get("Code") == 0:
                with self.lock:
                    for item in request["GiftList"]:
                        self.first_seen.setdefault(item["MsgId"], (arrived, item["Timestamp"]))
        finally:
            with self.lock:
                self.in_flight[room_id] -= 1
        with self.lock:
            self.calls.append(
                Call(
                    started=started,
                    finished=time.monotonic(),
                    room_id=room_id,
                    mini_game_id=request.get("MiniGameId", "") if isinstance(request, dict) else "",
                    gift_list=list(request.get("GiftList") or []) if isinstance(request, dict) else [],
                    answered_code=payload.get("Code") if isinstance(payload, dict) else None,
                )
            )
        return status, payload, scripted.drip_s

    def _decide(
        self, query: dict[str, str], request: Any, scripted: Scripted, request_id: str
    ) -> tuple[int, dict[str, Any] | bytes]:
        def refuse(code: int, message: str) -> tuple[int, dict[str, Any]]:
            return 200, {"Code": code, "Message": message, "RequestId": request_id}

        if query.get("Action") != "SendDanmakuGifts":
            return refuse(100000001, "unknown Action")
        expected = hashlib.md5(  # noqa: S324 - ZEGO's scheme
            f"{query.get('AppId')}{query.get('SignatureNonce')}{self.secret}{query.get('Timestamp')}".encode()
        ).hexdigest()
        if query.get("AppId") != self.app_id or query.get("Signature") != expected:
            return refuse(100000004, "signature check failed")
        if query.get("SignatureVersion") != "2.0" or not re.fullmatch(r"[0-9a-f]{16}", query.get("SignatureNonce", "")):
            return refuse(100000004, "bad SignatureVersion or SignatureNonce")
        if abs(time.time() - int(query.get("Timestamp", "0"))) > 600:
            return refuse(100000005, "Timestamp out of range")
        if scripted.raw is not None:
            return scripted.status, scripted.raw
        if scripted.code is not None:
            message = f"scripted {scripted.code}"
            return scripted.status, {"Code": scripted.code, "Message": message, "RequestId": request_id}
        if scripted.status >= 500:
            return scripted.status, {"Code": 7210000, "Message": "internal error", "RequestId": request_id}
        problem = _body_problem(request)
        if problem:
            return refuse(7200003, problem)

        results = []
        for index, item in enumerate(request["GiftList"]):
            msg_id, content = item["MsgId"], json.dumps(item, sort_keys=True)
            with self.lock:
                first = self.first_results.get(msg_id)
                if first is not None:
                    if first[0] != content:
                        self.content_changed.append(msg_id)
                    result = first[1]
                else:
                    result = scripted.results.get(index) or self.user_results.get(
                        item["UserInfo"]["UserId"], (0, "success")
                    )
                    if result[0] != 10006:  # "still processing" is not a first result
                        self.first_results[msg_id] = (content, result)
            results.append({"Result": result[0], "Msg": result[1], "MsgId": msg_id, "Timestamp": item["Timestamp"]})
        if scripted.omit:
            results = results[: -scripted.omit]
        return 200, {"Code": 0, "Message": "succeed", "RequestId": request_id, "Data": {"Results": results}}


def _body_problem(request: Any) -> str:
    """What ZEGO would refuse in a SendDanmakuGifts body, or ""."""
    if not isinstance(request, dict):
        return "body is not a JSON object"
    if not isinstance(request.get("RoomId"), str) or not 0 < len(request["RoomId"]) <= 64:
        return "RoomId"
    if not isinstance(request.get("MiniGameId"), str) or not request["MiniGameId"]:
        return "MiniGameId"
    gift_list = request.get("GiftList")
    if not isinstance(gift_list, list) or not gift_list:
        return "GiftList"
    for item in gift_list:
        user, gift = item.get("UserInfo"), item.get("GiftInfo")
        if not isinstance(item.get("MsgId"), str) or not MSG_ID.fullmatch(item["MsgId"]):
            return "MsgId"
        if not isinstance(user, dict) or not USER_ID.fullmatch(str(user.get("UserId"))):
            return "UserInfo.UserId"
        if not isinstance(user.get("Nickname"), str) or len(user["Nickname"]) > 32:
            return "UserInfo.Nickname"
        avatar = user.get("Avatar")
        if not isinstance(avatar, str) or not AVATAR.fullmatch(avatar) or len(avatar.encode()) > 1024:
            return "UserInfo.Avatar"
        if not isinstance(gift, dict) or not isinstance(gift.get("GiftId"), str):
            return "GiftInfo.GiftId"
        if not all(isinstance(gift.get(name), int) and gift[name] > 0 for name in ("Value", "Num")):
            return "GiftInfo.Value/Num"
        if not isinstance(item.get("Timestamp"), int):
            return "Timestamp"
    return ""


if __name__ == "__main__":
    fake = FakeVendor(*sys.argv[1:3]).start()
    print(fake.url, flush=True)
    threading.Event().wait()
