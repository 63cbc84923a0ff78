"""Avro encoding of log records.

Every record starts with one byte naming the schema revision it was written with, so a reader
built with a newer revision still decodes older records (Avro schema resolution does the rest).
"""

from __future__ import annotations

import io
import json
import re
from functools import cache
from importlib import resources
from typing import Any

import fastavro

_FILE = re.compile(r"^(?P<name>[a-z_]+)\.v(?P<version>\d+)\.avsc$")


class DecodeError(ValueError):
    """A record that is not a valid encoding of any known revision of its schema."""


class Codec:
    """Encoder/decoder for one record family (e.g. ``raw_event``), aware of all its revisions."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._writers: dict[int, Any] = {}
        for entry in resources.files("smsroute.schemas").iterdir():
            match = _FILE.match(entry.name)
            if match and match["name"] == name:
                schema = json.loads(entry.read_text(encoding="utf-8"))
                self._writers[int(match["version"])] = fastavro.parse_schema(schema)
        if not self._writers:
            raise LookupError(f"no schema named {name!r} in smsroute.schemas")
        self.version = max(self._writers)
        self.schema = self._writers[self.version]

    def encode(self, record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(bytes((self.version,)))
        fastavro.schemaless_writer(out, self.schema, record)
        return out.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        if not data or data[0] not in self._writers:
            raise DecodeError(f"{self.name}: unknown schema revision byte {data[:1]!r}")
        stream = io.BytesIO(data)
        stream.seek(1)
        try:
            record = fastavro.schemaless_reader(stream, self._writers[data[0]], self.schema)
        except (EOFError, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise DecodeError(f"{self.name}: {exc}") from exc
        if stream.tell() != len(data):
            raise DecodeError(f"{self.name}: {len(data) - stream.tell()} trailing bytes")
        if not isinstance(record, dict):
            raise DecodeError(f"{self.name}: not a record")
        return record


@cache
def codec(name: str) -> Codec:
    """The shared codec of a record family (schemas are parsed once per process)."""
    return Codec(name)
