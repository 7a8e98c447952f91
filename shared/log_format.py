"""Log set-up shared by the API and the workers: text or JSON lines, tagged with the request being served.

`request_id` is a context variable: the API's request middleware and the worker's task hooks set it,
and every line logged while it is set carries it (`"request_id"` in JSON, `[req ...]` in text). Code
that logs never passes passage or query text; the formatter adds nothing beyond the record.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import datetime, timezone

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(request_tag)s"

# A request id as clients may set it (X-Request-ID, a gRPC request's `id`): anything else is not used.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# what json.dumps leaves raw (ensure_ascii=False) that readers splitting on Unicode line breaks take for one
_JSON_LINE_BREAKS = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}


def is_valid_request_id(value: str | None) -> bool:
    """Whether a client's request id may be used (and logged) as it is: 1 to 128 of [A-Za-z0-9._-]."""
    return value is not None and REQUEST_ID_PATTERN.fullmatch(value) is not None


def redacted_url(url: str) -> str:
    """A URL fit to log or print: its password (Redis's, in RERANK_REDIS_URL) replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


def escape_control(text: str) -> str:
    """`text` with control characters (newlines included) written as escapes, so one record stays one line."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)

# Attributes every LogRecord has; anything else on a record came from `extra=` and goes into the JSON.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_tag"}


class RequestIdFilter(logging.Filter):
    """Copies the current request id onto each record (`request_id`, and `request_tag` for text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = getattr(record, "request_id", None) or request_id.get()
        record.request_id = current
        record.request_tag = f" [req {current}]" if current else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "request_id", None):
            entry["request_id"] = record.request_id
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key != "request_id":
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False).translate(_JSON_LINE_BREAKS)


class TextFormatter(logging.Formatter):
    """The text format; a message cannot start a new line, whatever a client put in it (tracebacks still can)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_control(record.message)
        return super().formatMessage(record)


def configure_logging(level: str, log_format: str, *, loggers: tuple[str, ...] = ()) -> None:
    """Send the root logger (and `loggers`, which then stop using their own handlers) to stderr in `log_format`.

    Calling it again replaces the handler it installed before, so it is safe in tests.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT))
    handler._rerank_fleet = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_rerank_fleet", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in loggers:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
