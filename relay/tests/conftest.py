import pytest

from gifts.services import game_join, gifts_send
from gifts.tests.factories import GiftFactory, MiniGameFactory, RoomFactory, ValueTierFactory, started_game
from relay.tests.fake_vendor import FakeVendor
from wallets.tests.factories import ProfileFactory

DEFAULT_AVATAR = "https://cdn.example.test/avatars/default.png"


@pytest.fixture
def vendor(settings):
    """A fake ZEGO on a local port, with the relay configured to call it."""
    fake = FakeVendor(app_id="1234567", secret="vendor-secret").start()
    settings.GAME_VENDOR_URL = fake.url
    settings.GAME_VENDOR_APP_ID = fake.app_id
    settings.GAME_VENDOR_SERVER_SECRET = fake.secret
    settings.GAME_VENDOR_TIMEOUT_S = 1.0
    settings.GAME_VENDOR_MERGE_MS = 50
    settings.GAME_VENDOR_DEFAULT_AVATAR = DEFAULT_AVATAR
    yield fake
    fake.stop()


@pytest.fixture
def arena(db):
    """A live room running a relayed TinyLoveWar (g1: 10 -> soldier, 66 -> general) with two joined fans."""
    room = RoomFactory(room_id="arena", host=ProfileFactory(user_id="anchor"))
    g1 = GiftFactory(gift_id="g1", price=1)
    game = MiniGameFactory(relay=True)
    ValueTierFactory(mini_game=game, gift=g1, value=10, effect="soldier")
    ValueTierFactory(mini_game=game, gift=g1, value=66, effect="general")
    session = started_game(room, game)
    for user_id in ("fan1", "fan2"):
        game_join(room=room, profile=ProfileFactory(user_id=user_id, nickname=f"Fan {user_id}", coins=10_000))
    return session


@pytest.fixture
def send(arena):
    """Send g1 gifts in the arena as one batch: send(("fan1", 10, 1), ...) -> outcomes."""
    from gifts.services import room_for_gifts
    from gifts.tests.factories import gift_request
    from wallets.models import Profile

    counter = iter(range(1, 1_000_000))

    def send_gifts(*gifts: tuple[str, int, int]):
        room, session = room_for_gifts("arena")
        requests = [
            gift_request(
                Profile.objects.get(user_id=user_id),
                room,
                f"m{next(counter)}",
                gift_code="g1",
                value=value,
                num=num,
                session=session,
            )
            for user_id, value, num in gifts
        ]
        return gifts_send(requests)

    return send_gifts
