"""Request bodies every API accepts: JSON whose text the database can store."""

import re

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class StorableJSONParser(JSONParser):
    """DRF's JSON parser, refusing NUL characters and lone surrogates anywhere, keys included.

    Refused gifts are queued for staff with their raw body, and PostgreSQL cannot store either
    of these: a gift must not fail with a server error for a reason the caller can be told.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if _holds_unstorable_text(data):
            raise ParseError("JSON text contains a NUL character or an invalid surrogate")
        return data


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _holds_unstorable_text(data) -> bool:
    pending = [data]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and _UNSTORABLE.search(value):
            return True
    return False
