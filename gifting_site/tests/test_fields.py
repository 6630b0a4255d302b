"""The strict fields: JSON types taken at their word, and serializers that share none of a request's state."""

import threading

from rest_framework import serializers

from gifting_site.fields import StrictCharField, StrictIntegerField


class Body(serializers.Serializer):
    name = StrictCharField(min_length=2, max_length=5)
    count = StrictIntegerField(min_value=1, max_value=9, default=1)
    note = StrictCharField(required=False, allow_blank=True, source="remark")


def test_wrong_types_and_bounds_are_refused_with_their_own_messages():
    serializer = Body(data={"name": 12, "count": "3"})
    assert not serializer.is_valid()
    assert serializer.errors == {"name": ["Must be a string."], "count": ["A valid integer is required."]}

    serializer = Body(data={"name": "a", "count": 10})
    assert not serializer.is_valid()
    assert serializer.errors == {
        "name": ["Ensure this field has at least 2 characters."],
        "count": ["Ensure this value is less than or equal to 9."],
    }


def test_each_serializer_binds_its_own_fields_and_leaves_the_declarations_unbound():
    first, second = Body(data={"name": "ab"}), Body(data={"name": "abc", "count": 2, "note": "hi"})
    assert first.fields["name"] is not second.fields["name"]
    assert first.fields["name"].parent is first and second.fields["name"].parent is second
    assert Body._declared_fields["name"].parent is None
    assert first.fields["note"].source_attrs == ["remark"] and first.fields["note"].label == "Note"

    assert first.is_valid() and second.is_valid()
    assert first.validated_data == {"name": "ab", "count": 1}
    assert second.validated_data == {"name": "abc", "count": 2, "remark": "hi"}


def test_serializers_validating_in_many_threads_at_once_keep_their_own_results():
    failures = []

    def validate(number: int) -> None:
        for _ in range(200):
            good, bad = Body(data={"name": f"n{number}", "count": number}), Body(data={"name": "x", "count": 0})
            if not good.is_valid() or good.validated_data != {"name": f"n{number}", "count": number}:
                failures.append(good.errors)
            if bad.is_valid() or set(bad.errors) != {"name", "count"}:
                failures.append(bad.validated_data)

    threads = [threading.Thread(target=validate, args=(number,)) for number in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
