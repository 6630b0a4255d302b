"""Seed a benchmark database: `python bench/seed.py ROOMS SENDERS COINS OUT.json [--goal] [--pk SECONDS]`.

Rooms `bench-room-<n>` hosted by `bench-host-<n>`, live; senders `bench-viewer-<n>` with COINS
coins each (a real top-up transfer) and an API token; gift `rose` (price 1); a server-API app
`bench-app`; with `--goal`, every room has a coins goal its gifts count towards. Writes the
room ids, the senders' tokens and the app's secret to OUT.json for the load clients. With
`--pk SECONDS`, the rooms fight a PK battle of that length, started last.
"""

import json
import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
django.setup()

from rest_framework.authtoken.models import Token  # noqa: E402

from engagement.models import PkBattle  # noqa: E402
from engagement.services import pk_battle_start, room_goal_set  # noqa: E402
from gifts.models import Gift, Room, ServerApp  # noqa: E402
from gifts.services import room_go_live  # noqa: E402
from wallets.services import profile_create, topup_create  # noqa: E402


def main(rooms: int, senders: int, coins: int, out: Path, goal: bool = False, pk_seconds: int = 0) -> None:
    Gift.objects.get_or_create(gift_id="rose", defaults={"name": "Rose", "price": 1, "icon": "/static/rose.svg"})
    app, _ = ServerApp.objects.get_or_create(app_id="bench-app", defaults={"secret": "bench-secret-0123456789"})
    room_ids = []
    for index in range(rooms):
        host = profile_create(user_id=f"bench-host-{index}", nickname=f"Host {index}")
        room = Room.objects.create(room_id=f"bench-room-{index}", host=host, title=f"Bench room {index}")
        room = room_go_live(room=room)
        if goal:
            room_goal_set(room=room, by=host, title="Bench goal", target=10**12)
        room_ids.append(room.room_id)
    people = []
    for index in range(senders):
        profile = profile_create(user_id=f"bench-viewer-{index}", nickname=f"Viewer {index}")
        topup_create(profile=profile, amount=coins, reference=f"bench-{profile.user_id}")
        people.append(profile)
    if pk_seconds:
        pk_battle_start(room_ids=room_ids, duration_s=pk_seconds, source=PkBattle.Source.STAFF)
    tokens = Token.objects.bulk_create([Token(key=Token.generate_key(), user=p.login) for p in people])
    out.write_text(
        json.dumps(
            {
                "rooms": room_ids,
                "hosts": [f"bench-host-{index}" for index in range(rooms)],
                "app": {"app_id": app.app_id, "secret": app.secret},
                "senders": [{"user_id": p.user_id, "token": t.key} for p, t in zip(people, tokens, strict=True)],
            }
        )
    )


if __name__ == "__main__":
    options = sys.argv[5:]
    main(
        int(sys.argv[1]),
        int(sys.argv[2]),
        int(sys.argv[3]),
        Path(sys.argv[4]),
        goal="--goal" in options,
        pk_seconds=int(options[options.index("--pk") + 1]) if "--pk" in options else 0,
    )
