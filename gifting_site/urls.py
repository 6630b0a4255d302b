from django.contrib import admin
from django.urls import include, path, re_path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from engagement import api as engagement_api
from gifting_site.converters import PublicIdConverter
from gifting_site.errors import api_not_found
from gifting_site.health import HealthApi, ReadyApi
from gifting_site.metrics import metrics_view
from gifts import api as gifts_api
from gifts import server_api
from gifts import views as gifts_views
from relay import api as relay_api
from wallets import api as wallets_api

register_converter(PublicIdConverter, "public_id")

api_patterns = [
    path("auth/token/", wallets_api.TokenObtainApi.as_view(), name="token"),
    path("me/", wallets_api.MeApi.as_view(), name="me"),
    path("me/sends/<path:msg_id>/", gifts_api.SendDetailApi.as_view(), name="send-detail"),
    path("me/limits/", gifts_api.SpendingLimitApi.as_view(), name="spending-limit"),
    path("wallet/entries/", wallets_api.EntryListApi.as_view(), name="wallet-entries"),
    path("gifts/", gifts_api.GiftListApi.as_view(), name="gift-list"),
    path("ws-ticket/", gifts_api.WsTicketApi.as_view(), name="ws-ticket"),
    path("rooms/<public_id:room_id>/", gifts_api.RoomDetailApi.as_view(), name="room-detail"),
    path("rooms/<public_id:room_id>/gifts/", gifts_api.GiftSendApi.as_view(), name="gift-send"),
    path("rooms/<public_id:room_id>/cohosts/", gifts_api.RoomCohostsApi.as_view(), name="room-cohosts"),
    path("rooms/<public_id:room_id>/goal/", engagement_api.RoomGoalApi.as_view(), name="room-goal"),
    path("rooms/<public_id:room_id>/leaderboard/", gifts_api.LeaderboardApi.as_view(), name="leaderboard"),
    path("rooms/<public_id:room_id>/events/", gifts_api.EventListApi.as_view(), name="room-events"),
    path("rooms/<public_id:room_id>/game/join/", gifts_api.GameJoinApi.as_view(), name="game-join"),
    path("pk/", engagement_api.PkCreateApi.as_view(), name="pk-create"),
    path("pk/<int:pk_id>/", engagement_api.PkDetailApi.as_view(), name="pk-detail"),
    path("pk/<int:pk_id>/accept/", engagement_api.PkAnswerApi.as_view(), name="pk-accept"),
    path("pk/<int:pk_id>/decline/", engagement_api.PkDeclineApi.as_view(), name="pk-decline"),
    path("hosts/<public_id:user_id>/gifts/", gifts_api.HostGiftWallApi.as_view(), name="host-gift-wall"),
    path("v1/", server_api.ServerApi.as_view(), name="server-api"),
    path("v1/callbacks/minigame/", relay_api.GameReportCallbackApi.as_view(), name="minigame-callback"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    # Only paths ending in "/": one without keeps CommonMiddleware's redirect to its slashed form.
    re_path(r"^(?P<path>(?:.*/)?)$", api_not_found),
]

urlpatterns = [
    path("healthz", HealthApi.as_view(), name="healthz"),
    path("readyz", ReadyApi.as_view(), name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("", gifts_views.room_list, name="room-list"),
    path("rooms/<public_id:room_id>/", gifts_views.room_page, name="room-page"),
    path("login/", gifts_views.ViewerLoginView.as_view(), name="login"),
    path("logout/", gifts_views.ViewerLogoutView.as_view(), name="logout"),
]

handler404 = "gifting_site.errors.not_found"
