"""`manage.py check` says why a relayed game's gifts would wait or fail instead of reaching the game."""

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.compatibility, deploy=False)
def relayed_games_have_credentials(app_configs, **kwargs) -> list[checks.CheckMessage]:
    from django.db import DatabaseError

    from gifts.models import MiniGame

    if settings.GAME_VENDOR_APP_ID and settings.GAME_VENDOR_SERVER_SECRET:
        return []
    try:
        relayed = list(MiniGame.objects.filter(relay=True).values_list("mini_game_id", flat=True)[:5])
    except DatabaseError:
        return []  # not migrated yet: nothing can be relayed
    if not relayed:
        return []
    return [
        checks.Warning(
            f"Mini-games {', '.join(relayed)} are relayed to the game vendor, but GAME_VENDOR_APP_ID or "
            "GAME_VENDOR_SERVER_SECRET is unset: their gifts are billed and wait as pending deliveries.",
            hint="Set both (and GAME_VENDOR_URL for a regional host), then run `manage.py relay_game_gifts`.",
            id="relay.W001",
        )
    ]


@checks.register(checks.Tags.compatibility, deploy=False)
def relayed_gifts_have_an_avatar(app_configs, **kwargs) -> list[checks.CheckMessage]:
    if not (settings.GAME_VENDOR_APP_ID and settings.GAME_VENDOR_SERVER_SECRET) or settings.GAME_VENDOR_DEFAULT_AVATAR:
        return []
    return [
        checks.Warning(
            "GAME_VENDOR_DEFAULT_AVATAR is unset: the game vendor requires an avatar URL for every sender, so the "
            "relayed gifts of people without one fail instead of reaching the game.",
            hint="Set it to an http or https URL of a default avatar.",
            id="relay.W002",
        )
    ]
