"""Commit gifts through `gift_send` in a process of its own, as another server worker would.

    python bench/faults/direct_gifts.py SEED.json COUNT TAG

Run with the server's environment. Sends COUNT gifts, round-robin over the seeded rooms and
senders, with MsgIds TAG-0, TAG-1, ...; prints one JSON line per gift:
{"msg_id", "sender", "room", "result", "seq"}. The Redis outage uses it to commit gifts while
the HTTP path is refused, so viewers must recover events that nobody could broadcast.
"""

import json
import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
django.setup()

from gifts.models import Room  # noqa: E402
from gifts.services import GiftRequest, gift_send  # noqa: E402
from wallets.models import Profile  # noqa: E402


def main(seed_path: Path, count: int, tag: str) -> None:
    seed = json.loads(seed_path.read_text())
    rooms = {room.room_id: room for room in Room.objects.select_related("host").filter(room_id__in=seed["rooms"])}
    user_ids = [sender["user_id"] for sender in seed["senders"]]
    senders = {profile.user_id: profile for profile in Profile.objects.filter(user_id__in=user_ids)}
    for index in range(count):
        room = rooms[seed["rooms"][index % len(seed["rooms"])]]
        sender = senders[user_ids[index % len(user_ids)]]
        msg_id = f"{tag}-{index}"
        outcome = gift_send(
            GiftRequest(
                scope=f"user:{sender.pk}",
                msg_id=msg_id,
                sender=sender,
                room=room,
                game_session=None,
                gift_code="rose",
                value=1,
                num=1,
            )
        )
        line = {"msg_id": msg_id, "sender": sender.user_id, "room": room.room_id, "result": int(outcome.result)}
        line["seq"] = outcome.event.seq if outcome.event is not None else None
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
