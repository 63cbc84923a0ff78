"""Structured JSON logs: one object per line, with the fields passed in ``extra``.

Secrets are kept out by the code that logs; as a safety net the formatter also masks fields named
like secrets and credentials inside any text (URL user info, token query parameters, webhook
secrets, bearer tokens), since error texts from libraries can quote a URL whole."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

REDACTED = "[redacted]"
_SECRET_FIELD = re.compile(r"secret|token|passw|authorization|signature|api[_-]?key|credential", re.IGNORECASE)
_SECRET_TEXT = [
    (re.compile(r"(?<=://)[^/@\s\"']+(?=@)"), REDACTED),
    (
        re.compile(
            r"(?<=[?&;])((?:[\w.-]*(?:token|secret|passw|sig|signature|api[_-]?key|auth)[\w.-]*)=)[^&#\s\"']*",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+"), f"whsec_{REDACTED}"),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\1 {REDACTED}"),
    # A header as a server error quotes the request, raw or as a bytes repr: "X-Smsroute-Token: value".
    (
        re.compile(
            r"(\b[\w-]*(?:token|secret|passw|signature|authorization|api[_-]?key|auth)[\w-]*\s*:[ \t]*)"
            r"(?!\[redacted\]|(?:Bearer|Basic)\s)[^\s\\'\",;][^\r\n\\'\",;]*",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
]


def redact(value: Any, field: str = "") -> Any:
    """``value`` with secrets masked: whole when ``field`` names a secret, else inside its text."""
    if field and _SECRET_FIELD.search(field) and value is not None:
        return REDACTED
    if isinstance(value, str):
        for pattern, replacement in _SECRET_TEXT:
            value = pattern.sub(replacement, value)
        return value
    if isinstance(value, dict):
        return {key: redact(item, str(key)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        entry.update((key, redact(value, key)) for key, value in vars(record).items() if key not in _STANDARD)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        line = json.dumps(entry, default=str, ensure_ascii=False)
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate quoted from a request: escaped, not a logging error
            line = json.dumps(entry, default=str)
        return line


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
