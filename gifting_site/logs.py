"""Log lines for people (`LOG_FORMAT=text`) or for a log pipeline (`LOG_FORMAT=json`, one object per line).

The lines operators query carry their facts as fields, passed with `extra=fields(...)`:
a gift batch, a game-relay call, a refused request. In text they follow the message as
`key=value`; in JSON they are keys of the line's object beside time, level, logger and message.
"""

import datetime
import json
import logging
from typing import Any

FIELDS = "fields"


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """`extra=` for a logging call: the line's structured facts."""
    return {FIELDS: values}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        values = getattr(record, FIELDS, None)
        if values:
            line += " " + " ".join(f"{key}={_text(value)}" for key, value in values.items())
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, FIELDS, None) or {})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)
