"""The guides stay true to the code: the configuration reference in docs/configuration.md is what the
settings classes generate, every relative link of README.md and docs/ leads to a file (and heading)
that exists, and docs/layout.md names every module of the package."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

from smsroute.cli import main
from smsroute.cli.config import BEGIN, END, generated_part, reference, splice

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = ROOT / "docs" / "configuration.md"
GUIDES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
REGENERATE = ".venv/bin/smsroute config reference --write docs/configuration.md"

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def test_configuration_reference_is_current() -> None:
    documented = generated_part(CONFIGURATION.read_text(encoding="utf-8"))
    generated = reference()
    if documented != generated:
        diff = difflib.unified_diff(documented.splitlines(True), generated.splitlines(True), "documented", "generated")
        excerpt = "".join(list(diff)[:40])
        pytest.fail(f"docs/configuration.md: the configuration reference is out of date; run `{REGENERATE}`\n{excerpt}")


def test_config_reference_command_prints_and_writes_the_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "reference"]) == 0
    assert capsys.readouterr().out == reference()
    document = tmp_path / "guide.md"
    document.write_text(f"# Guide\n\n{BEGIN}\nold text\n{END}\n\nAfter.\n")
    assert main(["config", "reference", "--write", str(document)]) == 0
    written = document.read_text()
    assert generated_part(written) == reference()
    assert written.startswith("# Guide\n\n") and written.endswith(f"{END}\n\nAfter.\n")
    assert splice(written, reference()) == written


def test_reference_has_every_table_and_shows_no_secret_default() -> None:
    text = reference()
    assert "| `password` | `SMSROUTE_SMTP__PASSWORD` | secret | — |" in text
    assert "| `signature_secret` | `SMSROUTE_INGRESS__NAME__SIGNATURE_SECRET` | secret | — |" in text
    assert "| `secret` | `SMSROUTE_SMS_REPLY__OPENVOIP__SECRET` | secret | required |" in text
    for section in (
        "### `[ingress.NAME]`",
        "### `[smtp]`",
        "### `[sms_reply]`",
        "#### `[sms_reply.openvoip]`",
        "### `[kafka]`",
        "### `[worker]`",
        "### `[inbound_email]`",
    ):
        assert f"\n{section}\n" in text, section


def test_reference_names_the_allowed_values_of_a_list() -> None:
    """A list whose items are a choice reads as the choice, not as 'list of one of ...s'."""
    assert '| `methods` | — | list of `"GET"` or `"POST"` | `["POST"]` |' in reference()


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text without markup, lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = anchor = slug(heading)
        count = 0
        while anchor in found:
            count += 1
            anchor = f"{base}-{count}"
        found.add(anchor)
    return found


def links(path: Path) -> list[str]:
    """The link targets of a Markdown file, outside code."""
    text = _CODE.sub("", _FENCE.sub("", path.read_text(encoding="utf-8")))
    return _LINK.findall(text)


@pytest.mark.parametrize("guide", GUIDES, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_lead_somewhere(guide: Path) -> None:
    broken = []
    for target in links(guide):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        destination = (guide.parent / path_part).resolve() if path_part else guide
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading with that anchor in {destination.relative_to(ROOT)}")
    assert broken == [], f"{guide.relative_to(ROOT)}: broken links: {'; '.join(broken)}"


def test_slugs_follow_github() -> None:
    assert slug('`[ingress.NAME]` with `provider = "twilio"`') == "ingressname-with-provider--twilio"
    assert slug("Ingress throughput: `bench/ingress.py`") == "ingress-throughput-benchingresspy"
    assert slug("The Kafka engine, side by side") == "the-kafka-engine-side-by-side"


def test_layout_names_every_module() -> None:
    layout = _FENCE.sub("", (ROOT / "docs" / "layout.md").read_text(encoding="utf-8"))
    named = set(re.findall(r"`([^`\n]+)`", layout))
    package = ROOT / "smsroute"
    missing = [
        str(path.relative_to(ROOT))
        for path in sorted(package.rglob("*"))
        if "__pycache__" not in path.parts
        and (
            (path.suffix == ".py" and path.name not in named)
            or (path.is_dir() and path.name != "__pycache__" and f"{path.name}/" not in named)
        )
    ]
    assert missing == [], f"not named in docs/layout.md: {', '.join(missing)}"
