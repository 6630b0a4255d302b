"""Verifying the game vendor's server callbacks, as ZEGO signs them.

`signature` = hex sha1 of the concatenation of the callback secret, `timestamp` and `nonce`
sorted as strings; the three arrive as query parameters. A timestamp more than 600 s from
our clock is refused, so a captured callback cannot be played back later; within that
window the ReportId makes a replay harmless.
"""

import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from django.conf import settings

from gifting_site.errors import AuthenticationFailed
from gifts.signatures import TIMESTAMP_WINDOW

_TIMESTAMP = re.compile(r"\d{1,12}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{40}")


def callback_signature(*, secret: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([secret, timestamp, nonce])).encode()).hexdigest()  # noqa: S324 - ZEGO's scheme


def callback_verify(params: Mapping[str, str], *, now: float | None = None) -> None:
    """Raise AuthenticationFailed (7200001) unless the vendor signed these parameters just now."""
    secret = settings.GAME_VENDOR_CALLBACK_SECRET
    timestamp, nonce, signature = (params.get(name, "") for name in ("timestamp", "nonce", "signature"))
    if not secret:
        raise AuthenticationFailed("authentication failed: GAME_VENDOR_CALLBACK_SECRET is not configured")
    if not _TIMESTAMP.fullmatch(timestamp) or not nonce or len(nonce) > 64 or not _SIGNATURE.fullmatch(signature):
        raise AuthenticationFailed("authentication failed: timestamp, nonce or signature missing or malformed")
    expected = callback_signature(secret=secret, timestamp=timestamp, nonce=nonce)
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        raise AuthenticationFailed("authentication failed: bad signature")
    if abs((time.time() if now is None else now) - int(timestamp)) > TIMESTAMP_WINDOW:
        raise AuthenticationFailed(f"authentication failed: timestamp more than {TIMESTAMP_WINDOW} s away")
