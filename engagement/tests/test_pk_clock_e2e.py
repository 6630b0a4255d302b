"""A PK battle ends on time in real server processes with no traffic and no viewers, and only once.

The servers run their own clocks (engagement.clock); nothing else runs and no request reaches
them after they started. The battle is started and inspected in the servers' database by
subprocesses, as a business server's StartPK and a later look at the data would.
"""

import datetime
import json
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings

from gifts.tests.servers import GUNICORN, ROOT, UVICORN, ServerProcess, seed, server_database, server_env
from gifts.tests.test_realtime_e2e import needs_scale_out

DURATION_S = 10  # the shortest battle there is
ON_TIME = datetime.timedelta(seconds=1)

START = """
import django, json
django.setup()
from engagement.services import pk_battle_start
battle = pk_battle_start(room_ids=["clock-red", "clock-blue"], duration_s={duration}, source="staff")
print(json.dumps({{"pk_id": battle.pk, "ends_at": battle.ends_at.isoformat()}}))
"""

INSPECT = """
import django, json, sys
django.setup()
from engagement.models import PkBattle
from gifts.models import GiftEvent
battle = PkBattle.objects.get(pk=int(sys.argv[1]))
ends = [
    {"room": event.room.room_id, "at": event.created_at.isoformat()}
    for event in GiftEvent.objects.filter(kind="pk_end", pk_battle=battle).select_related("room")
]
print(json.dumps({"state": battle.state, "ended_at": battle.ended_at and battle.ended_at.isoformat(), "ends": ends}))
"""


def run_python(env: dict[str, str], code: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def battle_ends_on_time_by_itself(env: dict[str, str]) -> None:
    started = run_python(env, START.format(duration=DURATION_S))
    ends_at = datetime.datetime.fromisoformat(started["ends_at"])
    # No request, no viewer: only the servers' clocks can end it.
    time.sleep(max(0.0, (ends_at - datetime.datetime.now(datetime.UTC)).total_seconds()) + ON_TIME.total_seconds())

    seen = run_python(env, INSPECT, str(started["pk_id"]))

    assert seen["state"] == "ended"
    assert sorted(end["room"] for end in seen["ends"]) == ["clock-blue", "clock-red"]  # once per room
    ended_at = datetime.datetime.fromisoformat(seen["ended_at"])
    assert ends_at <= ended_at <= ends_at + ON_TIME


@pytest.fixture
def deployment(tmp_path):
    with server_database(tmp_path) as database_url:
        env = server_env(
            database_url=database_url, redis_url=settings.REDIS_URL, channel_prefix=f"clock{uuid.uuid4().hex[:8]}"
        )
        seed(env, rooms=["clock-red", "clock-blue"], senders=1, coins=10)
        servers: list[ServerProcess] = []
        try:
            yield env, tmp_path, servers
        finally:
            for server in servers:
                server.stop()


def test_a_battle_ends_on_time_in_one_server_process_nobody_watches(deployment):
    env, workdir, servers = deployment
    servers.append(ServerProcess(env=env, log=workdir / "asgi.log").start())

    battle_ends_on_time_by_itself(env)


@needs_scale_out
def test_a_battle_ends_once_on_time_with_an_asgi_and_a_wsgi_server_both_watching_the_clock(deployment):
    env, workdir, servers = deployment
    servers.append(ServerProcess(env=env, log=workdir / "asgi.log", command=UVICORN).start())
    servers.append(ServerProcess(env=env, log=workdir / "wsgi.log", command=GUNICORN).start())

    battle_ends_on_time_by_itself(env)
