"""Serializer fields that take JSON types at their word.

DRF's stock fields coerce: `"5"` and `5.0` pass as integers, `123` passes as a string.
A money API should refuse a wrong type instead of guessing what was meant.

They are also cheap to copy. DRF copies every declared field for every serializer it
makes (`Serializer.get_fields`) by calling the field's constructor again, which builds its
validators and their messages anew: most of the CPU of validating a gift's small body.
Nothing of these fields changes while a request validates, so the copy of a declaration
shares its validators and messages, and `bind` gives the copy its own name and parent.
"""

import copy

from rest_framework import serializers


class _CopiedCheaply:
    def __deepcopy__(self, memo):
        if self.parent is not None:  # a bound field: DRF's own copy, which starts it unbound
            return super().__deepcopy__(memo)
        return copy.copy(self)


class StrictIntegerField(_CopiedCheaply, serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(_CopiedCheaply, serializers.CharField):
    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)
