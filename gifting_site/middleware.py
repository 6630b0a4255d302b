"""Middleware of the site's own: Django's for HTTP, Channels' for the room websockets."""

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, InstanceSessionWrapper, SessionMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.messages.storage import default_storage
from django.utils.functional import SimpleLazyObject, empty


class LazyMessageMiddleware(MessageMiddleware):
    """Django's messages, with a request's message storage made when the request first uses it.

    Django makes it for every request, which reads the messages cookie and builds a signer
    for it: about 4 % of a gift send's CPU under load. The APIs, most of the traffic, never
    use messages; the admin and the pages do, and they get the same storage as before. A
    request that never touched its messages leaves them as they were: nothing read, nothing
    to store.
    """

    def process_request(self, request):
        request._messages = SimpleLazyObject(lambda: default_storage(request))

    def process_response(self, request, response):
        messages = request.__dict__.get("_messages")
        if type(messages) is SimpleLazyObject and messages._wrapped is empty:
            return response
        return super().process_response(request, response)


class _ViewerSessionWrapper(InstanceSessionWrapper):
    """Channels' session wrapper, without its look at the session on every websocket message.

    It saves a session and sets its cookie only with an HTTP response's start, which a
    websocket never sends; yet it read the session's state for every message to every
    viewer, about 8 % of a room hub's CPU with 1,000 viewers watching.
    """

    async def send(self, message):
        if message["type"] == "websocket.send":
            return await self.real_send(message)
        return await super().send(message)


class _ViewerSessionMiddleware(SessionMiddleware):
    async def __call__(self, scope, receive, send):
        wrapper = _ViewerSessionWrapper(scope, send)
        await wrapper.resolve_session()
        return await self.inner(wrapper.scope, receive, wrapper.send)


def viewer_auth_middleware_stack(inner):
    """channels.auth.AuthMiddlewareStack (a websocket knows its person by session cookie), sending
    websocket messages without the session wrapper's per-message look."""
    return CookieMiddleware(_ViewerSessionMiddleware(AuthMiddleware(inner)))
