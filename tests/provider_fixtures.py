"""The recorded provider requests of tests/fixtures/providers (format in its README), as tests use them."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent / "fixtures" / "providers"


@dataclass(frozen=True)
class Fixture:
    path: Path
    provider: str
    kind: str
    settings: dict[str, Any]
    method: str
    target: str
    """Path and query of the request as recorded (``/inbound/plivo?x=1``)."""
    headers: dict[str, str]
    body: bytes
    expect: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.path.stem}"

    @property
    def accepted(self) -> bool:
        return 200 <= self.expect["status"] < 300


def load(path: Path) -> Fixture:
    data = json.loads(path.read_text())
    request = data["request"]
    url = urlsplit(request["url"])
    body = base64.b64decode(request["body_base64"]) if "body_base64" in request else request.get("body", "").encode()
    return Fixture(
        path=path,
        provider=data["provider"],
        kind=data["kind"],
        settings=data.get("settings", {}),
        method=request["method"],
        target=url.path + (f"?{url.query}" if url.query else ""),
        headers=dict(request.get("headers", {})),
        body=body,
        expect=data["expect"],
    )


def fixtures(providers: set[str] | None = None) -> list[Fixture]:
    """Every case file (not the SDK vector files), of the given providers only when given."""
    found = [load(path) for path in sorted(ROOT.glob("*/*.json")) if path.name != "sdk_signatures.json"]
    return [fixture for fixture in found if providers is None or fixture.provider in providers]
