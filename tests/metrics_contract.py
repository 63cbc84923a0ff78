"""The metrics contract as docs/operations.md documents it, and the metric names a PromQL query uses:
shared by the tests of the exported metrics, the alert rules and the dashboard."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "operations.md"
PROMETHEUS = ROOT / "docker" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))

_ROW = re.compile(r"^\| `(smsroute_\w+)` \| (counter|gauge|histogram) \|([^|]*)\| (all|embedded|kafka) \|")
_SUFFIXES = ("_bucket", "_count", "_sum", "_created")
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
}
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "ALERTS"}
"""Series Prometheus makes itself, allowed in queries beside the contract."""


@dataclass(frozen=True)
class Metric:
    name: str
    type: str
    labels: frozenset[str]
    engine: str


def section(heading: str) -> str:
    """The section of docs/operations.md under ``## <heading>``, up to the next section."""
    text = OPERATIONS.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def contract() -> dict[str, Metric]:
    """The metrics table of docs/operations.md, by metric name."""
    metrics = {}
    for line in section("Metrics contract").splitlines():
        if match := _ROW.match(line):
            name, kind, labels, engine = match.groups()
            metrics[name] = Metric(name, kind, frozenset(re.findall(r"`(\w+)`", labels)), engine)
    assert metrics, "no metrics table under '## Metrics contract' in docs/operations.md"
    return metrics


def recording_rules() -> dict[str, str]:
    """Recorded series of the shipped rule files -> their expressions."""
    return {
        rule["record"]: rule["expr"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def series_names(query: str) -> set[str]:
    """Every series name a PromQL query selects (functions, keywords, labels and literals left out)."""
    query = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', query)  # string literals
    query = re.sub(r"\{[^}]*\}", "", query)  # label matchers
    query = re.sub(r"\[[^\]]*\]", "", query)  # ranges and subqueries
    query = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", query)
    query = re.sub(r"\boffset\s+-?\w+", "", query)
    query = re.sub(r"\$\{?\w+\}?", "", query)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", query):
        name, call = match.groups()
        if not call and name not in _KEYWORDS:
            names.add(name)
    return names


def contract_name(series: str) -> str:
    """The contract metric a series belongs to (a histogram's ``_bucket`` is its histogram's)."""
    for suffix in _SUFFIXES:
        if series.endswith(suffix) and series.removesuffix(suffix) in contract():
            return series.removesuffix(suffix)
    return series


def unknown_series(query: str) -> set[str]:
    """Series a query uses that are neither in the contract, recorded from it, nor Prometheus's own."""
    known = contract().keys() | recording_rules().keys() | PROMETHEUS_OWN
    return {name for name in series_names(query) if contract_name(name) not in known}
