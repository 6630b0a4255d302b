"""Who is calling the server API: ZEGO's SignatureVersion 2.0 request signing.

A business server signs each call with `Signature = hex md5(AppId + SignatureNonce +
ServerSecret + Timestamp)`. The secret never travels; the Timestamp and the one-time
nonce keep a captured URL from being used again.
"""

import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from django.core.cache import cache

from gifting_site.errors import AuthenticationFailed, StaleRequest
from gifts.models import ServerApp

SIGNATURE_VERSION = "2.0"
# ZEGO's documented maximum clock difference between the caller and the server.
TIMESTAMP_WINDOW = 600
# A Timestamp up to 600 s in the future is accepted and stays acceptable until it is 600 s in
# the past, so a nonce has to be remembered for both halves of that window.
NONCE_TTL = 2 * TIMESTAMP_WINDOW

_NONCE = re.compile(r"[\x21-\x7e]{1,64}")  # printable ASCII, no spaces
_SIGNATURE = re.compile(r"[0-9a-fA-F]{32}")
_TIMESTAMP = re.compile(r"-?\d{1,12}")


def signature_compute(*, app_id: str, nonce: str, secret: str, timestamp: str) -> str:
    return hashlib.md5(f"{app_id}{nonce}{secret}{timestamp}".encode()).hexdigest()  # noqa: S324 - ZEGO's scheme


def nonce_key(app_id: str, nonce: str) -> str:
    # Hashed so that whatever the caller put in the nonce makes a short, safe cache key.
    return f"server-api:nonce:{app_id}:{hashlib.sha256(nonce.encode()).hexdigest()[:32]}"


def request_authenticate(params: Mapping[str, str], *, now: float | None = None) -> ServerApp:
    """The app that signed these query parameters, or AuthenticationFailed / StaleRequest.

    On success the nonce is spent, whatever happens to the request afterwards: a retry
    signs again with a new nonce (every MsgId of a refused request may be sent again).
    """
    app_id = params.get("AppId", "")
    nonce = params.get("SignatureNonce", "")
    timestamp = params.get("Timestamp", "")
    signature = params.get("Signature", "")
    for name, value, pattern in (
        ("AppId", app_id, re.compile(r"[\x21-\x7e]{1,32}")),
        ("SignatureNonce", nonce, _NONCE),
        ("Timestamp", timestamp, _TIMESTAMP),
        ("Signature", signature, _SIGNATURE),
    ):
        if not value:
            raise AuthenticationFailed(f"authentication failed: {name} is missing")
        if not pattern.fullmatch(value):
            raise AuthenticationFailed(f"authentication failed: {name} is malformed")
    if params.get("SignatureVersion") != SIGNATURE_VERSION:
        raise AuthenticationFailed(f"authentication failed: SignatureVersion must be {SIGNATURE_VERSION}")

    app = ServerApp.objects.filter(app_id=app_id, is_active=True).first()
    # An unknown app is checked against a throwaway secret so that both refusals take as long.
    expected = signature_compute(app_id=app_id, nonce=nonce, secret=app.secret if app else "", timestamp=timestamp)
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()) or app is None:
        raise AuthenticationFailed("authentication failed: unknown AppId or bad Signature")

    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > TIMESTAMP_WINDOW:
        raise StaleRequest(f"stale request: Timestamp is more than {TIMESTAMP_WINDOW} s away from server time")
    # cache.add is atomic (SET NX on Redis), so of two processes seeing the same nonce only one wins.
    if not cache.add(nonce_key(app.app_id, nonce), 1, timeout=NONCE_TTL):
        raise StaleRequest("replayed request: SignatureNonce was already used")
    return app
