"""Middleware of the site's own."""

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
