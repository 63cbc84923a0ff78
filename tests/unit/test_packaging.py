"""The wheel ships every package of the source tree and the Avro schemas."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "smsroute").rglob("__init__.py")} | {
        "smsroute.schemas"
    }
    assert listed == on_disk


def test_schemas_are_packaged() -> None:
    from importlib import resources

    names = {entry.name for entry in resources.files("smsroute.schemas").iterdir()}
    assert "raw_event.v1.avsc" in names


FIXED = {"jinja2": (3, 1, 6), "aiohttp": (3, 12, 14), "aiosmtpd": (1, 4, 6)}
"""Releases that fixed flaws we would otherwise ship: Jinja2 sandbox escapes, aiohttp request
smuggling, aiosmtpd SMTP smuggling."""


def test_dependency_floors_exclude_releases_with_known_flaws() -> None:
    floors = {}
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        name, _, version = requirement.split(";")[0].partition(">=")
        floors[name.split("[")[0].strip().lower()] = tuple(int(part) for part in version.split(",")[0].split("."))
    for name, fixed in FIXED.items():
        assert floors[name] >= fixed, f"{name} allows releases before {'.'.join(map(str, fixed))}"
