"""The wheel ships every package of the source tree and the Avro schemas."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "smsroute").rglob("__init__.py")
    } | {"smsroute.schemas"}
    assert listed == on_disk


def test_schemas_are_packaged() -> None:
    from importlib import resources

    names = {entry.name for entry in resources.files("smsroute.schemas").iterdir()}
    assert "raw_event.v1.avsc" in names
