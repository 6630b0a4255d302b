"""URL parts."""


class PublicIdConverter:
    """A room's or a person's public id in a URL: 1-64 characters, no slash, no control character.

    Anything else cannot name a room or a person (and PostgreSQL refuses a NUL in a query), so
    such a URL is simply not found.
    """

    regex = r"[^/\x00-\x1f\x7f]{1,64}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
