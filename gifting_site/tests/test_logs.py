"""The log lines an operator queries: one per gift batch and per refusal, as text or as JSON."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gifting_site.logs import JsonFormatter, TextFormatter
from gifts.services import gifts_send
from gifts.tests.factories import gift_request

ROOT = Path(__file__).resolve().parents[2]


def lines_of(caplog, event: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if getattr(record, "fields", {}).get("event") == event]


@pytest.mark.django_db
def test_a_gift_batch_is_one_line_with_its_codes_rooms_and_milliseconds(caplog, viewer, room, rose):
    caplog.set_level(logging.INFO, logger="gifts.services")

    gifts_send([gift_request(viewer, room, "ok-1"), gift_request(viewer, room, "too-much", num=100_000)])

    [record] = lines_of(caplog, "gift_batch")
    line = json.loads(JsonFormatter().format(record))
    assert (line["gifts"], line["paid"], line["codes"], line["rooms"]) == (2, 1, {"10007": 1}, [room.room_id])
    assert line["refused"] == [{"msg_id": "too-much", "code": 10007}]
    assert isinstance(line["ms"], float) and line["level"] == "INFO" and line["logger"] == "gifts.services"
    assert "event=gift_batch" in TextFormatter().format(record)


@pytest.mark.django_db
def test_a_refused_request_is_one_line_with_its_code(caplog, client_for, viewer):
    caplog.set_level(logging.INFO, logger="gifting_site.errors")

    response = client_for(viewer).post("/api/rooms/nowhere/gifts/", {"gift_id": "rose", "msg_id": "x"}, format="json")

    [record] = lines_of(caplog, "request_refused")
    assert record.fields == {
        "event": "request_refused",
        "api": "viewer",
        "method": "POST",
        "path": "/api/rooms/nowhere/gifts/",
        "status": 404,
        "code": response.json()["code"],
    }


@pytest.mark.parametrize(("log_format", "parse"), [("json", json.loads), ("text", str)])
def test_log_format_picks_json_or_text_for_the_console(log_format, parse):
    probe = (
        "import logging; from gifting_site.logs import fields; "
        "logging.getLogger('gifts.services').warning('probe', extra=fields(event='probe', ms=1.5))"
    )
    env = {**os.environ, "LOG_FORMAT": log_format, "DATABASE_URL": "sqlite:///:memory:"}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    [line] = [line for line in result.stderr.splitlines() if "probe" in line]
    if log_format == "json":
        assert {key: value for key, value in parse(line).items() if key != "time"} == {
            "level": "WARNING",
            "logger": "gifts.services",
            "message": "probe",
            "event": "probe",
            "ms": 1.5,
        }
    else:
        assert line.endswith("WARNING gifts.services: probe event=probe ms=1.5")


def test_an_unknown_log_format_is_refused_at_start():
    env = {**os.environ, "LOG_FORMAT": "xml", "DATABASE_URL": "sqlite:///:memory:"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "LOG_FORMAT must be text or json" in result.stderr
