"""The CPU budget of one REST gift, layer by layer: `python bench/send_layers.py [REPEAT]`.

Creates a fresh benchmark database (gs_bench_layers) on PostgreSQL with Redis, seeds it,
and then, in this one process with no profiler attached, times REPEAT calls (default 2,000)
of each layer a REST send goes through, in the order the request meets them:

- the whole request through Django's WSGI handler, as gunicorn calls it, beside the same
  handler answering GET /healthz (the framework's floor, no database);
- each layer on its own: token authentication, the send throttle, the body's validation,
  the room and game-session lookup, the write of a one-gift batch, the answer's rendering.

CPU is `time.process_time` (this process only: PostgreSQL's and Redis's work is theirs),
so the figures add up to what one server process spends per gift when nothing else runs;
beside it, the calling thread's own share (the rest is the process's publishing thread,
which hands committed gifts to the channel layer).
Under load the write is shared by the gifts of a batch; the other layers are per request.
"""

import io
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, database_recreate, machine, seed, server_env  # noqa: E402

DATABASE = "gs_bench_layers"


def cpu_per_call(function, repeat: int) -> tuple[float, float]:
    """Milliseconds of CPU per call (the whole process, the calling thread), after a warm-up."""
    for _ in range(min(50, repeat)):
        function()
    process_started, thread_started = time.process_time(), time.thread_time()
    for _ in range(repeat):
        function()
    return (
        (time.process_time() - process_started) * 1000 / repeat,
        (time.thread_time() - thread_started) * 1000 / repeat,
    )


def main(repeat: int) -> None:
    database_recreate(DATABASE)
    env = server_env(DATABASE, os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/4"), DATABASE_POOL_SIZE="2")
    data = seed(env, rooms=100, senders=100, coins=10_000_000, out=Path(tempfile.mkdtemp()) / "seed.json")
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from rest_framework.renderers import JSONRenderer

    from gifts import selectors
    from gifts.api import GiftSendApi, GiftSendThrottle, outcome_response
    from gifts.services import GiftRequest, gifts_send, room_for_gifts

    def room_lookup(room_id: str):
        found = room_for_gifts(room_id)
        if isinstance(found, tuple):
            return found
        # Trees before 98d9999 read the room, then its game session: measure them the same way.
        return found, selectors.room_game_session(found)

    from wallets.authentication import ProfileTokenAuthentication

    handler = WSGIHandler()
    numbers = itertools.count()
    senders, rooms = data["senders"], data["rooms"]

    def wsgi_call(method: str, path: str, body: bytes = b"", token: str = "") -> int:
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
        }
        if token:
            environ["HTTP_AUTHORIZATION"] = f"Token {token}"
        statuses = []
        response = handler(environ, lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(response)
        response.close()
        return int(statuses[0].split()[0])

    def send_request() -> None:
        number = next(numbers)
        sender, room = senders[number % len(senders)], rooms[number % len(rooms)]
        body = json.dumps({"gift_id": "rose", "msg_id": f"layers-{number}"}).encode()
        status = wsgi_call("POST", f"/api/rooms/{room}/gifts/", body, sender["token"])
        assert status == 201, status

    authentication = ProfileTokenAuthentication()
    user, _ = authentication.authenticate_credentials(senders[0]["token"])
    throttle = GiftSendThrottle()

    class Request:  # what the throttle reads of a DRF request
        def __init__(self, user):
            self.user = user

    request = Request(user)

    room_objects = [room_lookup(room_id)[0] for room_id in rooms]

    def gift_request(number: int) -> GiftRequest:
        room = room_objects[number % len(room_objects)]
        return GiftRequest(
            scope=f"user:{user.profile.pk}",
            msg_id=f"layers-write-{number}",
            sender=user.profile,
            room=room,
            game_session=None,
            gift_code="rose",
            value=1,
            num=1,
        )

    outcome = gifts_send([gift_request(next(numbers))])[0]

    def render() -> None:
        response = outcome_response(outcome)
        JSONRenderer().render(response.data)

    layers = [
        ("GET /healthz through the WSGI handler (floor)", lambda: wsgi_call("GET", "/healthz")),
        ("POST a gift through the WSGI handler (whole request)", send_request),
        ("  token authentication", lambda: authentication.authenticate_credentials(senders[0]["token"])),
        ("  send throttle", lambda: throttle.allow_request(request, None)),
        (
            "  body validation",
            lambda: GiftSendApi.InputSerializer(data={"gift_id": "rose", "msg_id": "m-1"}).is_valid(
                raise_exception=True
            ),
        ),
        ("  room and game-session lookup", lambda: room_lookup(rooms[0])),
        ("  write of a one-gift batch", lambda: gifts_send([gift_request(next(numbers))])),
        ("  answer rendering", render),
    ]
    print(f"{machine()}\nCPU of this process per call, {repeat} calls each, PostgreSQL + Redis:\n")
    print("| layer | CPU ms per call | of which the calling thread |\n|---|---|---|")
    for name, function in layers:
        process_ms, thread_ms = cpu_per_call(function, repeat)
        print(f"| {name} | {process_ms:.3f} | {thread_ms:.3f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
