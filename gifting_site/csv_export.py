"""CSV downloads from the admin: the selected rows of a list, streamed, one line per row.

A list's admin names its columns (`csv_columns`: header and a function of the row) and
adds `export_csv` to its actions. Staff filter the list, select all, and download. The
file streams as the database reads, so a month of gifts never sits in memory whole.
"""

import csv
from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin
from django.http import StreamingHttpResponse
from django.utils import timezone

# Rows read from the database at a time while streaming.
CHUNK = 2_000


class _Line:
    """csv.writer writes into this and gets the line back, for StreamingHttpResponse (Django's own recipe)."""

    def write(self, value: str) -> str:
        return value


def csv_response(filename: str, header: list[str], rows: Iterable[Iterable[Any]]) -> StreamingHttpResponse:
    writer = csv.writer(_Line())
    lines = (writer.writerow([_cell(value) for value in row]) for row in _with_header(header, rows))
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@admin.action(description="Export the selected rows as CSV")
def export_csv(model_admin: Any, request: Any, queryset: Any) -> StreamingHttpResponse:
    columns: list[tuple[str, Callable[[Any], Any]]] = model_admin.csv_columns
    name = model_admin.model._meta.verbose_name_plural.replace(" ", "-")
    queryset = queryset.select_related(*getattr(model_admin, "csv_related", ())).prefetch_related(
        *getattr(model_admin, "csv_prefetch", ())
    )
    rows = ([value(row) for _, value in columns] for row in queryset.order_by("pk").iterator(chunk_size=CHUNK))
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return csv_response(f"{name}-{stamp}.csv", [header for header, _ in columns], rows)


def _with_header(header: list[str], rows: Iterable[Iterable[Any]]) -> Iterable[Iterable[Any]]:
    yield header
    yield from rows


def _cell(value: Any) -> Any:
    """A value as a spreadsheet should read it: ISO times, empty for None, and text that cannot run as a formula."""
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        # A nickname like "=HYPERLINK(...)" would run in Excel: quote it as text.
        return "'" + value
    return value
