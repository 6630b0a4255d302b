"""Websocket URLs."""

from django.urls import path

from gifts.consumers import RoomConsumer

websocket_urlpatterns = [
    path("ws/rooms/<str:room_id>/", RoomConsumer.as_asgi()),
]
