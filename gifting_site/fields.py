"""Serializer fields that take JSON types at their word.

DRF's stock fields coerce: `"5"` and `5.0` pass as integers, `123` passes as a string.
A money API should refuse a wrong type instead of guessing what was meant.
"""

from rest_framework import serializers


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)
