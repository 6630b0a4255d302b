"""Real ASGI server processes for end-to-end tests: their own database, seed data, start and stop.

The test process's own test database lives inside a transaction or in SQLite memory, where a
server process cannot see it. The servers therefore get a database of their own: a fresh
PostgreSQL database named after the test database (so parallel runs with different
DATABASE_URLs never share one), or a temporary SQLite file, migrated and seeded by a
subprocess that runs the same service functions as production.

Run as `python -m gifts.tests.servers seed ROOMS SENDERS COINS` (with DATABASE_URL set), it
migrates, seeds and prints {"rooms": [...], "senders": [{"user_id", "token"}]} as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
HOST_USER_ID = "e2e-host"
GIFT_ID = "rose"


# --- the servers' database ------------------------------------------------------------------------


@contextmanager
def server_database(workdir: Path) -> Iterator[str]:
    """A DATABASE_URL the servers share, dropped afterwards: PostgreSQL when the tests run on it, else SQLite."""
    from django.conf import settings

    config = settings.DATABASES["default"]
    if config["ENGINE"] != "django.db.backends.postgresql":
        # IMMEDIATE: concurrent gift transactions queue for SQLite's write lock. In the default
        # DEFERRED mode two of them that both read first cannot upgrade to writing, and SQLite fails
        # one at once with "database is locked" (the busy timeout does not apply to that deadlock).
        yield f"sqlite:///{workdir / 'servers.sqlite3'}?transaction_mode=IMMEDIATE"
        return

    name = (config.get("TEST", {}).get("NAME") or f"test_{config['NAME']}") + "_e2e"
    _postgres_recreate(config, name)
    try:
        yield _postgres_url(config, name)
    finally:
        _postgres_drop(config, name)


def _postgres_admin(config: dict):
    import psycopg

    return psycopg.connect(
        dbname="postgres",
        host=config.get("HOST") or None,
        port=config.get("PORT") or None,
        user=config.get("USER") or None,
        password=config.get("PASSWORD") or None,
        autocommit=True,
    )


def _postgres_recreate(config: dict, name: str) -> None:
    from psycopg import sql

    with _postgres_admin(config) as admin:
        # A run killed before its teardown leaves the database behind; start clean.
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _postgres_drop(config: dict, name: str) -> None:
    from psycopg import sql

    with _postgres_admin(config) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _postgres_url(config: dict, name: str) -> str:
    user = quote(config.get("USER") or "", safe="")
    password = quote(config.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = config.get("HOST") or "localhost"
    port = f":{config['PORT']}" if config.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{quote(name, safe='')}"


def server_env(*, database_url: str, redis_url: str, channel_prefix: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "DJANGO_"))}
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="gifting_site.settings",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DEBUG="false",
        LOG_LEVEL="WARNING",
        # The tests send far faster than a person taps; the per-user throttle is tested in test_api.
        GIFT_SEND_RATE="100000/s",
        # One connection per request, closed after it: two servers and the tests' own database
        # stay far from PostgreSQL's connection limit on a shared machine.
        CONN_MAX_AGE="0",
        CHANNEL_LAYER_PREFIX=channel_prefix,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        env.pop("REDIS_URL", None)
    return env


def seed(env: dict[str, str], *, rooms: list[str], senders: int, coins: int) -> dict:
    """Migrate the servers' database and seed it in a subprocess; returns its JSON answer."""
    done = subprocess.run(
        [sys.executable, "-m", "gifts.tests.servers", "seed", ",".join(rooms), str(senders), str(coins)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"seeding the servers' database failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _seed_main(rooms: list[str], senders: int, coins: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from gifts.models import Gift, Room
    from gifts.services import room_go_live
    from wallets.services import profile_create, topup_create

    call_command("migrate", interactive=False, verbosity=0)
    Gift.objects.create(gift_id=GIFT_ID, name="Rose", price=1, icon="/static/gifts/rose.svg")
    host = profile_create(user_id=HOST_USER_ID, nickname="E2E host")
    for room_id in rooms:
        room_go_live(room=Room.objects.create(room_id=room_id, host=host, title=f"Room {room_id}"))
    people = []
    for index in range(senders):
        profile = profile_create(user_id=f"e2e-viewer-{index}", nickname=f"Viewer {index}")
        topup_create(profile=profile, amount=coins, reference=f"e2e-{profile.user_id}")
        people.append({"user_id": profile.user_id, "token": Token.objects.create(user=profile.login).key})
    print(json.dumps({"rooms": rooms, "senders": people}))


# --- the server processes -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The two servers of the production layout (README, "Scaling out"), on a port filled in later.
UVICORN = (
    *(sys.executable, "-m", "uvicorn", "gifting_site.asgi:application"),
    *("--host", "127.0.0.1", "--port", "{port}", "--no-access-log", "--log-level", "warning"),
)
GUNICORN = (
    *(sys.executable, "-m", "gunicorn", "gifting_site.wsgi:application"),
    *("--bind", "127.0.0.1:{port}", "--workers", "1", "--worker-class", "gthread", "--threads", "4"),
)


@dataclass
class ServerProcess:
    """One server process (uvicorn for ASGI by default, or gunicorn for WSGI) on a port of its own."""

    env: dict[str, str]
    log: Path
    command: tuple[str, ...] = UVICORN
    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30.0, attempts: int = 3) -> ServerProcess:
        for _ in range(attempts):
            # Another program may take the probed port before the server binds it; then try another.
            self.port = free_port()
            if self._start_on_port(timeout):
                return self
        raise RuntimeError(f"the server did not start; last lines of {self.log}:\n{self.log_tail()}")

    def _start_on_port(self, timeout: float) -> bool:
        command = [part.format(port=self.port) for part in self.command]
        with self.log.open("ab") as log:
            # A session of its own: stop() signals the whole process group, whatever it spawned.
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if _answers(self.port):
                return True
            time.sleep(0.1)
        self.stop()
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _answers(port: int) -> bool:
    """True once the server serves the public gift catalog (Django loaded, database reachable)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /api/gifts/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = sock.recv(64).decode("latin-1")
    except OSError:
        return False
    return head.startswith("HTTP/1.1 200")


if __name__ == "__main__":
    if sys.argv[1:2] != ["seed"] or len(sys.argv) != 5:
        raise SystemExit("usage: python -m gifts.tests.servers seed ROOM,ROOM,... SENDERS COINS")
    _seed_main(sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4]))
