"""Server-rendered pages for viewers: the live room list, a room, signing in and out.

The pages only read. Every change (sending a gift, joining a game) goes through the
viewer REST API from the page's JavaScript, so the browser and a mobile app share one path.
"""

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.staticfiles import finders
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from gifts import selectors
from gifts.models import GamePlayer, GameSession, Room, ValueTier
from rankings.selectors import live_top
from wallets.models import Profile
from wallets.selectors import profile_balances

# Served only when an operator has put lottie-web there (see the README); otherwise every
# gift animates its icon with CSS, whatever its animation format.
LOTTIE_SCRIPT = "vendor/lottie.min.js"
# The page's count picker: the quantities viewers tap most, as on the big platforms.
COUNT_CHOICES = [1, 5, 10, 66, 99]


def room_list(request: HttpRequest) -> HttpResponse:
    rooms = (
        Room.objects.filter(is_live=True)
        .select_related("host")
        .prefetch_related(
            Prefetch(
                "game_sessions",
                queryset=GameSession.objects.exclude(state=GameSession.State.ENDED).select_related("mini_game"),
                to_attr="open_games",
            )
        )
        .order_by("-last_seq", "room_id")
    )
    cards = [
        {
            "room_id": room.room_id,
            "title": room.title or room.room_id,
            "host": room.host.display_name,
            "gift_count": room.last_seq,
            "game": selectors.game_state_payload(room.open_games[0]) if room.open_games else None,
        }
        for room in rooms
    ]
    return render(request, "gifts/room_list.html", {"rooms": cards})


def _viewer(request: HttpRequest) -> Profile | None:
    # A GET must not write, so a signed-in staff user without a profile yet simply has 0 coins
    # here; the send API creates the profile on first use.
    if not request.user.is_authenticated:
        return None
    return Profile.objects.filter(login=request.user).first()


def _tiers_by_gift(session: GameSession | None) -> dict[str, list[dict[str, Any]]]:
    if session is None:
        return {}
    tiers: dict[str, list[dict[str, Any]]] = {}
    for tier in ValueTier.objects.filter(mini_game_id=session.mini_game_id).select_related("gift"):
        tiers.setdefault(tier.gift.gift_id, []).append({"value": tier.value, "effect": tier.effect})
    return tiers


@ensure_csrf_cookie
def room_page(request: HttpRequest, room_id: str) -> HttpResponse:
    room = Room.objects.select_related("host").filter(room_id=room_id).first()
    if room is None:
        raise Http404(f"room {room_id} not found")
    session = selectors.room_game_session(room)
    detail = selectors.room_detail(room)
    viewer = _viewer(request)
    joined = bool(session and viewer and GamePlayer.objects.filter(session=session, profile=viewer).exists())
    leaderboard = live_top(room)
    recent = selectors.recent_events(room)
    gifts = [selectors.gift_payload(gift) for gift in selectors.active_gifts()]
    coins = profile_balances(viewer)["coins"] if viewer else 0
    page_state = {
        "room_id": room.room_id,
        "host_id": room.host.user_id,
        "seq": room.last_seq,
        "live": room.is_live,
        "game": detail["game"],
        "goal": detail["goal"],
        "pk": detail["pk"],
        "leaderboard": leaderboard,
        "recent": recent,
        "gifts": gifts,
        "tiers": _tiers_by_gift(session),
        "viewer": (
            {"user_id": viewer.user_id if viewer else request.user.get_username(), "coins": coins, "joined": joined}
            if request.user.is_authenticated
            else None
        ),
        "is_host": bool(viewer and viewer.pk == room.host_id),
        "urls": {
            "send": reverse("gift-send", args=[room.room_id]),
            "join": reverse("game-join", args=[room.room_id]),
            "ticket": reverse("ws-ticket"),
            "me": reverse("me"),
            "socket": f"/ws/rooms/{room.room_id}/",
        },
    }
    context = {
        "room": detail,
        "page_state": page_state,
        "leaderboard": leaderboard,
        "recent": list(reversed(recent)),
        "gifts": gifts,
        "coins": coins,
        "viewer": viewer,
        "joined": joined,
        "count_choices": COUNT_CHOICES,
        "lottie_available": finders.find(LOTTIE_SCRIPT) is not None,
        "lottie_script": LOTTIE_SCRIPT,
    }
    return render(request, "gifts/room.html", context)


class ViewerLoginView(auth_views.LoginView):
    """Viewers sign in here; the admin keeps its own staff-only login."""

    template_name = "gifts/login.html"
    redirect_authenticated_user = True


class ViewerLogoutView(auth_views.LogoutView):
    next_page = "/"
