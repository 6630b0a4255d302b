"""The site's middleware: messages made only for requests that use them; sessions on the room websockets."""

import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib import messages
from django.contrib.messages.storage.cookie import CookieStorage
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.utils.functional import empty

from gifting_site.asgi import application
from gifting_site.middleware import LazyMessageMiddleware
from gifts.tests.factories import RoomFactory
from gifts.tests.test_consumers import send_gifts

pytestmark = pytest.mark.django_db


def handled(request, view):
    """`request` through the session and message middleware around `view`."""
    return SessionMiddleware(LazyMessageMiddleware(view))(request)


def test_a_request_that_never_uses_messages_makes_no_storage_and_leaves_its_cookie_alone():
    request = RequestFactory().get("/healthz")
    request.COOKIES[CookieStorage.cookie_name] = "left-from-an-admin-page"

    response = handled(request, lambda request: HttpResponse("ok"))

    assert request._messages._wrapped is empty
    assert CookieStorage.cookie_name not in response.cookies


def test_a_message_added_on_one_request_is_shown_on_the_next():
    def adds(request):
        messages.success(request, "3 room(s) live.")
        return HttpResponse("redirected")

    first = handled(RequestFactory().post("/admin/gifts/room/"), adds)
    cookie = first.cookies[CookieStorage.cookie_name].value
    assert cookie

    shown = []

    def shows(request):
        shown.extend(str(message) for message in messages.get_messages(request))
        return HttpResponse("page")

    second_request = RequestFactory().get("/admin/gifts/room/")
    second_request.COOKIES[CookieStorage.cookie_name] = cookie
    second = handled(second_request, shows)

    assert shown == ["3 room(s) live."]
    assert second.cookies[CookieStorage.cookie_name].value == ""  # shown once, then cleared


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("realtime_reset")
async def test_a_signed_in_viewers_websocket_gets_the_room_and_its_gifts(viewer, rose):
    # given a person signed in to the site (a session cookie) and a live room
    room = await database_sync_to_async(RoomFactory)(room_id=f"ws-{uuid.uuid4().hex[:12]}")
    browser = Client()
    await database_sync_to_async(browser.force_login)(viewer.login)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"

    # when they watch the room through the websocket with that cookie
    headers = [(b"origin", b"http://testserver"), (b"cookie", cookie.encode())]
    communicator = WebsocketCommunicator(application, f"/ws/rooms/{room.room_id}/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["type"] == "snapshot"

    # then the gifts sent meanwhile reach them
    await database_sync_to_async(send_gifts)(viewer, room, rose, 2, prefix="signed-in")
    message = await communicator.receive_json_from(timeout=5)
    assert (message["type"], [event["seq"] for event in message["events"]]) == ("gifts", [1, 2])
    await communicator.disconnect()
