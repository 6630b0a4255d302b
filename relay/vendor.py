"""The game vendor's SendDanmakuGifts, from the caller's side: sign, send, and read the answer.

Every answer, however broken, becomes one `CallAnswer` of four kinds, which is all the
relay decides on (SPEC section 9):

- `RESULTS`: Code 0; each MsgId's Result, where the vendor named it;
- `RETRY`: the vendor recorded nothing (no answer, timeout, HTML, truncated JSON, 5xx,
  Code 1 / 7 / 7202000 / 7210000 or a code we do not know): the same call again, later;
- `PAUSE`: our credentials or clock were refused; no call can succeed until staff act;
- `REFUSED`: the game refused the whole call (not found, not started, room unknown).
"""

import enum
import json
import logging
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3
from django.conf import settings

from gifts.signatures import SIGNATURE_VERSION, signature_compute

logger = logging.getLogger(__name__)

# Credentials and clock: retrying cannot help until the configuration changes.
PAUSE_CODES = frozenset({7203001, 7202003, 100000004, 100000005})
# The game refused the call itself: every gift of it fails with the code.
REFUSED_CODES = frozenset({7202001, 7202002, 7206001, 7200004})
# The vendor's "still processing this MsgId": ask again later with the same MsgId.
RESULT_IN_PROGRESS = 10006
# An answer for 500 gifts is a few tens of KiB; anything this large is not one.
MAX_ANSWER_BYTES = 1024 * 1024
# Codes and Results are stored in 32-bit columns; a number outside them is not a vendor code.
CODE_MAX = 2**31 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class AnswerKind(enum.Enum):
    RESULTS = "results"
    RETRY = "retry"
    PAUSE = "pause"
    REFUSED = "refused"


@dataclass(frozen=True)
class CallAnswer:
    kind: AnswerKind
    # The vendor's Code, or None when no well-formed answer came back.
    code: int | None
    message: str
    request_id: str = ""
    # RESULTS only: vendor MsgId -> (Result, Msg), for the MsgIds the vendor named.
    results: dict[str, tuple[int, str]] = field(default_factory=dict)
    elapsed_ms: int = 0


def credentials_configured() -> bool:
    return bool(settings.GAME_VENDOR_APP_ID and settings.GAME_VENDOR_SERVER_SECRET)


def signed_params(action: str, *, now: float | None = None) -> dict[str, str]:
    """The public query parameters of a vendor call, signed with a fresh nonce and the current time."""
    app_id = settings.GAME_VENDOR_APP_ID
    nonce = secrets.token_hex(8)
    timestamp = str(int(time.time() if now is None else now))
    return {
        "Action": action,
        "AppId": app_id,
        "SignatureNonce": nonce,
        "Timestamp": timestamp,
        "SignatureVersion": SIGNATURE_VERSION,
        "Signature": signature_compute(
            app_id=app_id, nonce=nonce, secret=settings.GAME_VENDOR_SERVER_SECRET, timestamp=timestamp
        ),
    }


def danmaku_gifts_send(
    session: requests.Session, *, room_id: str, mini_game_id: str, gift_list: Sequence[dict[str, Any]]
) -> CallAnswer:
    """One SendDanmakuGifts call; never raises for anything the network or the vendor does."""
    body = {"RoomId": room_id, "MiniGameId": mini_game_id, "GiftList": list(gift_list)}
    timeout = settings.GAME_VENDOR_TIMEOUT_S
    started = time.monotonic()
    try:
        with session.post(
            settings.GAME_VENDOR_URL.rstrip("/") + "/",
            params=signed_params("SendDanmakuGifts"),
            json=body,
            timeout=(timeout, timeout),
            stream=True,
        ) as response:
            content = _body_read(response, deadline=started + 2 * timeout)
        answer = (
            answer_read(response.status_code, content)
            if content is not None
            else CallAnswer(AnswerKind.RETRY, None, f"no whole answer within {2 * timeout:g} s")
        )
    except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
        answer = CallAnswer(AnswerKind.RETRY, None, f"no answer: {type(error).__name__}: {error}"[:300])
    return CallAnswer(**{**answer.__dict__, "elapsed_ms": round((time.monotonic() - started) * 1000)})


def _body_read(response: requests.Response, *, deadline: float) -> bytes | None:
    """The answer's body, or None if it is still arriving at the deadline or is far too big.

    requests' read timeout applies to each read, so a vendor trickling bytes could hold a
    call open for ever; the relay's claim on the room would lapse under it and another
    relay would call the room at the same time.
    """
    chunks, size = [], 0
    # read1, not iter_content: it returns what has arrived instead of waiting for a full chunk.
    while chunk := response.raw.read1(64 * 1024, decode_content=True):
        chunks.append(chunk)
        size += len(chunk)
        if time.monotonic() > deadline or size > MAX_ANSWER_BYTES:
            return None
    return b"".join(chunks)


def answer_read(status: int, content: bytes) -> CallAnswer:
    """What an HTTP answer from the vendor means for the call's gifts."""
    try:
        payload = json.loads(content)
    except (ValueError, RecursionError):  # ValueError covers UnicodeDecodeError
        payload = None
    if not isinstance(payload, dict):
        return CallAnswer(AnswerKind.RETRY, None, f"HTTP {status}, not a JSON object: {content[:120]!r}"[:300])
    code = payload.get("Code")
    message = _text(payload.get("Message"))
    request_id = _text(payload.get("RequestId"))[:64]
    if not _is_int(code):
        return CallAnswer(AnswerKind.RETRY, None, f"HTTP {status}, no Code in the answer", request_id)
    if code == 0 and status < 500:
        return CallAnswer(AnswerKind.RESULTS, 0, message, request_id, results=_results(payload.get("Data")))
    if code in PAUSE_CODES:
        return CallAnswer(AnswerKind.PAUSE, code, message, request_id)
    if code in REFUSED_CODES and status < 500:
        return CallAnswer(AnswerKind.REFUSED, code, message, request_id)
    # 1, 7, 7202000, 7210000, a 5xx, and every code not documented: nothing was recorded.
    return CallAnswer(AnswerKind.RETRY, code, message or f"HTTP {status}", request_id)


def _results(data: Any) -> dict[str, tuple[int, str]]:
    """Data.Results as {MsgId: (Result, Msg)}; entries that are not well formed are left out (so retried)."""
    results = data.get("Results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        return {}
    read: dict[str, tuple[int, str]] = {}
    for entry in results:
        if isinstance(entry, dict) and isinstance(entry.get("MsgId"), str) and _is_int(entry.get("Result")):
            read.setdefault(entry["MsgId"], (entry["Result"], _text(entry.get("Msg"))))
    return read


def _is_int(value: Any) -> bool:
    """A code as the vendor documents them: a JSON integer, not negative, 32 bits."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= CODE_MAX


def _text(value: Any) -> str:
    """The vendor's text, safe to store: PostgreSQL refuses NUL in text, and logs want one line."""
    return _CONTROL.sub(" ", value[:300]) if isinstance(value, str) else ""
