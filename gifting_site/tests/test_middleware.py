"""Messages for the admin and the pages, with no message storage made for requests that never use it."""

import pytest
from django.contrib import messages
from django.contrib.messages.storage.cookie import CookieStorage
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils.functional import empty

from gifting_site.middleware import LazyMessageMiddleware

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
