import factory

from gifts.models import Gift, MiniGame, Room, ValueTier
from gifts.services import GiftRequest, game_session_open, game_session_start, room_go_live
from wallets.tests.factories import ProfileFactory


class GiftFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Gift
        django_get_or_create = ["gift_id"]

    gift_id = factory.Sequence(lambda n: f"gift{n}")
    name = factory.LazyAttribute(lambda gift: gift.gift_id.title())
    price = 10
    icon = factory.LazyAttribute(lambda gift: f"/static/gifts/{gift.gift_id}.svg")


class MiniGameFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MiniGame
        django_get_or_create = ["mini_game_id"]

    mini_game_id = "TinyLoveWar"
    name = "Tiny Love War"


class ValueTierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ValueTier

    mini_game = factory.SubFactory(MiniGameFactory)
    gift = factory.SubFactory(GiftFactory)
    value = 10
    effect = "soldier"


class RoomFactory(factory.django.DjangoModelFactory):
    """A room that is live, with a live session, unless `live=False`."""

    class Meta:
        model = Room

    room_id = factory.Sequence(lambda n: f"room{n}")
    host = factory.SubFactory(ProfileFactory, user_id=factory.Sequence(lambda n: f"host{n}"))
    title = factory.LazyAttribute(lambda room: f"Room {room.room_id}")

    @classmethod
    def _create(cls, model_class, *, live: bool = True, **kwargs):
        room = super()._create(model_class, **kwargs)
        return room_go_live(room=room) if live else room


def started_game(room: Room, mini_game: MiniGame | None = None):
    session = game_session_open(room=room, mini_game=mini_game or MiniGameFactory())
    return game_session_start(session=session)


def gift_request(sender, room, msg_id, *, gift_code="rose", value=1, num=1, session=None, receiver=None) -> GiftRequest:
    """A viewer's send as the REST API builds it (MsgId scoped to the sender)."""
    return GiftRequest(
        scope=f"user:{sender.pk}",
        msg_id=msg_id,
        sender=sender,
        room=room,
        game_session=session,
        gift_code=gift_code,
        value=value,
        num=num,
        receiver_code=receiver,
    )
