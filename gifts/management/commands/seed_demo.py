"""Demo data of SPEC section 8. Safe to run again: it only fills in what is missing."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from gifts.models import GameSession, Gift, MiniGame, Room, ServerApp, ValueTier
from gifts.selectors import room_game_session
from gifts.services import game_session_open, game_session_start, room_go_live
from wallets.models import Account, Profile, Transfer
from wallets.services import coins_account, profile_create, topup_create

DEMO_COINS = 100_000
ICON = "/static/gifts/{}.svg"

GIFTS = [
    # gift_id, name, price, animation format, sort order
    ("g1", "Rocket", 1, Gift.AnimationFormat.LOTTIE, 10),
    ("rose", "Rose", 1, Gift.AnimationFormat.PNG, 20),
    ("car", "Car", 500, Gift.AnimationFormat.PNG, 30),
]
HOSTS = [("anchor111", "Anchor 111"), ("anchor222", "Anchor 222")]
VIEWERS = [(f"user{n}", f"Viewer {n}") for n in range(1, 6)]


class Command(BaseCommand):
    help = "Create the demo catalog, rooms, game, viewers with coins and a server app (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--password", default="demo-pass", help="password of every seeded person")
        parser.add_argument("--app-id", default="1000001")
        parser.add_argument("--app-secret", default="demo-secret")
        parser.add_argument(
            "--relay", action="store_true", help="relay TinyLoveWar's gifts to the game vendor (relay_game_gifts)"
        )

    def handle(self, *args, password: str, app_id: str, app_secret: str, relay: bool = False, **options):
        with transaction.atomic():
            gifts = {
                gift_id: self._gift(gift_id, name, price, fmt, order) for gift_id, name, price, fmt, order in GIFTS
            }
            game, _ = MiniGame.objects.get_or_create(mini_game_id="TinyLoveWar", defaults={"name": "Tiny Love War"})
            if relay and not game.relay:
                MiniGame.objects.filter(pk=game.pk).update(relay=True)
                game.relay = True
            for value, effect in ((10, "soldier"), (66, "general")):
                ValueTier.objects.get_or_create(
                    mini_game=game, gift=gifts["g1"], value=value, defaults={"effect": effect}
                )
            people = {user_id: self._person(user_id, nickname, password) for user_id, nickname in HOSTS + VIEWERS}
            room123 = self._room("room123", "Tiny Love War night", people["anchor111"])
            self._room("room456", "Chill chat", people["anchor222"])
            session = room_game_session(room123) or game_session_open(room=room123, mini_game=game)
            if session.state == GameSession.State.WAITING:
                game_session_start(session=session)
            self._staff_admin(password)
            app, _ = ServerApp.objects.get_or_create(
                app_id=app_id, defaults={"name": "demo business server", "secret": app_secret}
            )
            if app.secret != app_secret:
                ServerApp.objects.filter(pk=app.pk).update(secret=app_secret)

        # Each top-up is its own durable money transaction, idempotent on its reference.
        for user_id, _ in VIEWERS:
            profile = people[user_id]
            if not Transfer.objects.filter(reference=f"topup:seed-demo-{user_id}").exists():
                topup_create(profile=profile, amount=DEMO_COINS, reference=f"seed-demo-{user_id}")

        self.stdout.write("Demo data ready:")
        self.stdout.write("  gifts: " + ", ".join(f"{g.gift_id} {g.name} ({g.price} coins)" for g in gifts.values()))
        relayed = ", relayed to the game vendor" if game.relay else ""
        self.stdout.write(f"  game TinyLoveWar: g1 Value 10 -> soldier, Value 66 -> general{relayed}")
        self.stdout.write("  room123 hosted by anchor111, live, TinyLoveWar started")
        self.stdout.write("  room456 hosted by anchor222, live, no game")
        for user_id, _ in VIEWERS:
            self.stdout.write(f"  {user_id}: {coins_account(people[user_id]).balance} coins")
        self.stdout.write(f"  every person above signs in with username = user_id, password {password!r}")
        self.stdout.write(f"  server app AppId {app_id}, secret {app_secret!r}")
        self.stdout.write(f"  admin: /admin/ as username 'admin', password {password!r}")

    def _gift(self, gift_id, name, price, fmt, order) -> Gift:
        gift, _ = Gift.objects.get_or_create(
            gift_id=gift_id,
            defaults={
                "name": name,
                "price": price,
                "icon": ICON.format(gift_id),
                "animation_format": fmt,
                "animation_url": f"/static/gifts/{gift_id}.json" if fmt == Gift.AnimationFormat.LOTTIE else "",
                "sort_order": order,
            },
        )
        return gift

    def _person(self, user_id: str, nickname: str, password: str) -> Profile:
        profile = Profile.objects.filter(user_id=user_id).select_related("login").first()
        if profile is None:
            User = get_user_model()
            if User.objects.filter(username=user_id).exists():
                raise SystemExit(f"a Django user {user_id!r} exists without a Giftstream profile")
            return profile_create(user_id=user_id, nickname=nickname, password=password)
        profile.login.set_password(password)
        profile.login.save(update_fields=["password"])
        Account.objects.get_or_create(profile=profile, kind=Account.Kind.COINS)
        return profile

    def _staff_admin(self, password: str) -> None:
        User = get_user_model()
        admin, created = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
        if created or not admin.check_password(password):
            admin.set_password(password)
            admin.save(update_fields=["password"])

    def _room(self, room_id: str, title: str, host: Profile) -> Room:
        room, _ = Room.objects.get_or_create(room_id=room_id, defaults={"title": title, "host": host})
        return room_go_live(room=room)
