"""Profile the viewer send path in one process: `python bench/profile_send.py [GIFTS]`.

Creates a fresh benchmark database (gs_bench_profile), seeds it, then sends GIFTS gifts
(default 500) through the full Django stack (middleware, token auth, throttle, view, send
pipeline) with Django's test client, under pyinstrument. Prints where the time goes and the
database round trips of one gift.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, database_recreate, seed, server_env  # noqa: E402

DATABASE = "gs_bench_profile"


def main(gifts: int) -> None:
    database_recreate(DATABASE)
    env = server_env(DATABASE, os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/4"))
    seed_file = Path(tempfile.mkdtemp()) / "seed.json"
    data = seed(env, rooms=100, senders=100, coins=1_000_000, out=seed_file)
    os.environ.update({key: env[key] for key in ("DATABASE_URL", "REDIS_URL", "GIFT_SEND_RATE", "LOG_LEVEL")})
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gifting_site.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from pyinstrument import Profiler

    client = Client()

    def send(index: int) -> None:
        sender = data["senders"][index % len(data["senders"])]
        room = data["rooms"][index % len(data["rooms"])]
        response = client.post(
            f"/api/rooms/{room}/gifts/",
            json.dumps({"gift_id": "rose", "msg_id": f"profile-{index}"}),
            content_type="application/json",
            headers={"authorization": f"Token {sender['token']}"},
        )
        assert response.status_code == 201, response.content

    for index in range(50):  # warm up: imports, connections, caches
        send(index)
    with CaptureQueriesContext(connection) as queries:
        send(50)
    print(f"database round trips for one gift: {len(queries.captured_queries)}")
    for query in queries.captured_queries:
        print("   ", query["sql"][:110])

    profiler = Profiler(interval=0.0005)
    started = time.perf_counter()
    profiler.start()
    for index in range(100, 100 + gifts):
        send(index)
    profiler.stop()
    elapsed = time.perf_counter() - started
    print(f"\n{gifts} gifts in {elapsed:.2f} s: {elapsed / gifts * 1000:.2f} ms per gift, one process, no concurrency")
    print(profiler.output_text(unicode=False, color=False, show_all=False, time="percent_of_total"))
    if os.environ.get("PROFILE_FLAT"):
        print(profiler.output_text(unicode=False, color=False, flat=True, time="percent_of_total")[:6000])


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
