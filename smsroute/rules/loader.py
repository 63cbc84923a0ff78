"""Loading routing rules: a YAML file, or every ``*.yaml``/``*.yml`` of a directory in name order.

Nothing is half-loaded: every problem of every file is collected, each with its file, line, column
and the dotted place in the rules (``routes[1].match.time.tz``), and the set is refused as a whole.
Pydantic reports where a problem is as a path through the data; the YAML node tree (``yaml.compose``)
turns that path back into a line and column.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .matcher import RuleSet
from .model import Action, Email, Match, Retry, Route, RuleFile, SmsReply, TimeWindow, Webhook, first_word

SUFFIXES = (".yaml", ".yml")
Loc = Sequence[str | int]


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None = None
    column: int | None = None
    where: str = ""
    """Dotted place in the rules, e.g. ``routes[1].match.time.tz``."""
    reason: str = ""

    def __str__(self) -> str:
        place = self.file if self.line is None else f"{self.file}:{self.line}:{self.column}"
        return f"{place}: {self.where}: {self.reason}" if self.where else f"{place}: {self.reason}"


class RuleError(Exception):
    """Rules that cannot be used; ``problems`` holds every one found, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(map(str, self.problems)))


class RulesYAML(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML 1.2 core scalars: ``18:00`` stays a time (YAML 1.1 reads the number 1080), and words such
    as ``NO``, ``on`` or ``y`` stay words (YAML 1.1 reads booleans). Only true/false are booleans.
    Parsed by libyaml where PyYAML has it (its wheels do): large rule sets load several times faster."""


RulesYAML.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag.rsplit(":", 1)[1] not in ("bool", "int", "float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _regex, _first in (
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("int", r"[-+]?(?:0|[1-9][0-9]*)", "-+0123456789"),
    (
        "float",
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        "-+0123456789.",
    ),
):
    RulesYAML.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(f"^(?:{_regex})$"), list(_first))

_MODELS: tuple[type[BaseModel], ...] = (RuleFile, Route, Match, TimeWindow, Action, Webhook, Email, SmsReply, Retry)
_KEYS = sorted({field.alias or name for model in _MODELS for name, field in model.model_fields.items()})


def rule_files(path: Path) -> list[Path]:
    """The files a PATH stands for; hidden files (editor locks and swaps) are not rules."""
    if path.is_dir():
        return sorted(
            (entry for entry in path.iterdir() if entry.suffix in SUFFIXES and not entry.name.startswith(".")),
            key=lambda entry: entry.name,
        )
    if path.is_file():
        return [path]
    raise RuleError([Problem(str(path), reason="no such file or directory")])


@dataclass(frozen=True, slots=True)
class _Parsed:
    """One valid file, with its node tree to point into."""

    name: str
    root: Node
    rules: RuleFile

    def problem(self, loc: Loc, reason: str) -> Problem:
        node, segments, _ = _locate(self.root, loc)
        return _at(self.name, node, _dotted(segments), reason)

    def origin(self, loc: Loc) -> str:
        node = _locate(self.root, loc)[0]
        return f"{self.name}:{node.start_mark.line + 1}"


def load_rules(path: Path | str) -> RuleSet:
    """The rule set at ``path``, or :class:`RuleError` listing every problem."""
    path = Path(path)
    files = rule_files(path)
    if not files:
        raise RuleError([Problem(str(path), reason="no *.yaml or *.yml files in this directory")])
    problems: list[Problem] = []
    parsed: list[_Parsed] = []
    digest = hashlib.sha256()
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            problems.append(Problem(str(file), reason=f"cannot read: {exc.strerror}"))
            continue
        digest.update(file.name.encode() + b"\0" + data + b"\0")
        if (result := _parse(str(file), data, problems)) is not None:
            parsed.append(result)
    if problems:
        raise RuleError(problems)
    rules = _merge(parsed, digest.hexdigest()[:12], problems)
    if not problems and not rules.routes:
        problems.append(Problem(str(path), reason="no routes: every message would be unrouted"))
    if problems:
        raise RuleError(problems)
    return rules


def _parse(name: str, data: bytes, problems: list[Problem]) -> _Parsed | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem(name, reason=f"not UTF-8 text (byte {exc.start})"))
        return None
    loader = RulesYAML(text)
    try:
        root = loader.get_single_node()
        if root is None:
            problems.append(Problem(name, 1, 1, reason="empty file: expected 'routes:' and/or 'aliases:'"))
            return None
        count = len(problems)
        _find_duplicate_keys(name, root, [], problems)
        if len(problems) > count:
            return None
        content = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = f"{exc.context} (line {exc.context_mark.line + 1}), " if exc.context and exc.context_mark else ""
        reason = f"YAML syntax: {context}{exc.problem}"
        problems.append(
            Problem(name, mark.line + 1 if mark else None, mark.column + 1 if mark else None, reason=reason)
        )
        return None
    finally:
        loader.dispose()
    try:
        return _Parsed(name, root, RuleFile.model_validate(content))
    except ValidationError as exc:
        errors = exc.errors()
        problems.extend(_explain(name, root, error) for error in errors if not _echo(error, errors))
        return None


def _echo(error: Any, errors: list[Any]) -> bool:
    """Pydantic adds "should have at least 1 item" to a list whose only items were invalid: noise."""
    loc = error["loc"]
    return error["type"] == "too_short" and any(other["loc"][: len(loc)] == loc != other["loc"] for other in errors)


def _find_duplicate_keys(name: str, node: Node, segments: list[str | int], problems: list[Problem]) -> None:
    """YAML keeps the last of two equal keys without a word; a rule file must not lose one silently."""
    if isinstance(node, MappingNode):
        seen: dict[Any, Node] = {}
        for key, value in node.value:
            if isinstance(key, ScalarNode):
                if key.value in seen:
                    first = seen[key.value].start_mark
                    reason = f"duplicate key {key.value!r} (first at line {first.line + 1})"
                    problems.append(_at(name, key, _dotted(segments), reason))
                seen.setdefault(key.value, key)
            _find_duplicate_keys(name, value, [*segments, key.value], problems)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            _find_duplicate_keys(name, item, [*segments, index], problems)


def _locate(root: Node, loc: Loc) -> tuple[Node, list[str | int], Loc]:
    """Follow a pydantic error path through the YAML nodes: the deepest node reached, the path to it,
    and the part of ``loc`` not found (a missing key). An index into a single value is skipped: that
    value stood for a list of one (``keyword: STOP``)."""
    node: Node = root
    segments: list[str | int] = []
    key_node: Node | None = None
    for depth, part in enumerate(loc):
        if part == "[key]" and key_node is not None:
            node = key_node
        elif isinstance(part, int) and not isinstance(node, SequenceNode):
            continue
        elif isinstance(node, MappingNode):
            pair = next(((key, value) for key, value in node.value if getattr(key, "value", None) == part), None)
            if pair is None:
                return node, segments, loc[depth:]
            key_node, node = pair
            segments.append(part)
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            segments.append(part)
        else:
            return node, segments, loc[depth:]
    return node, segments, ()


def _explain(name: str, root: Node, error: Any) -> Problem:
    """One pydantic error as a problem at its YAML node, in words for the rule author."""
    node, segments, missing = _locate(root, error["loc"])
    kind = error["type"]
    if kind == "missing" and missing:
        return _at(name, node, _dotted(segments), f"missing required key {missing[-1]!r}")
    if kind == "extra_forbidden":
        key = segments[-1] if segments else error["loc"][-1]
        close = difflib.get_close_matches(str(key), _KEYS, n=1)
        hint = " (not valid at this level)" if key in _KEYS else f" (did you mean {close[0]!r}?)" if close else ""
        return _at(name, _key_node(root, segments) or node, _dotted(segments[:-1]), f"unknown key {key!r}{hint}")
    if kind == "value_error":
        reason = str(error["ctx"]["error"])
    elif kind == "too_short":
        least = error["ctx"]["min_length"]
        reason = "must not be empty" if least == 1 else f"needs at least {least} items"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        reason = "expected a mapping (key: value lines)"
    else:
        reason = error["msg"]
    return _at(name, node, _dotted([*segments, *missing]), reason)


def _key_node(root: Node, segments: list[str | int]) -> Node | None:
    parent = _locate(root, segments[:-1])[0]
    if isinstance(parent, MappingNode):
        return next((key for key, _ in parent.value if getattr(key, "value", None) == segments[-1]), None)
    return None


def _at(name: str, node: Node, where: str, reason: str) -> Problem:
    return Problem(name, node.start_mark.line + 1, node.start_mark.column + 1, where, reason)


def _dotted(segments: Sequence[str | int]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in segments).lstrip(".")


def _merge(files: list[_Parsed], version: str, problems: list[Problem]) -> RuleSet:
    """One rule set from the files in order: aliases merged (a word means one keyword only, and
    aliases do not chain), route names unique, routes naming canonical keywords rather than aliases."""
    aliases: dict[str, str] = {}
    defined: dict[str, str] = {}
    canonical: set[str] = set()
    places: list[tuple[_Parsed, Loc, str]] = []
    for file in files:
        for key, words in file.rules.aliases.items():
            keyword = first_word(key)
            canonical.add(keyword)
            for index, word in enumerate(words):
                loc: Loc = ("aliases", key, index)
                if word == keyword:
                    continue
                if word in aliases:
                    reason = f"alias {word!r} already means {aliases[word]!r} ({defined[word]})"
                    problems.append(file.problem(loc, reason))
                    continue
                aliases[word], defined[word] = keyword, file.origin(loc)
                places.append((file, loc, word))
    for file, loc, word in places:
        if word in canonical:
            reason = f"{word!r} is an alias of {aliases[word]!r} and has aliases of its own: aliases do not chain"
            problems.append(file.problem(loc, reason))

    routes: list[Route] = []
    origins: list[str] = []
    named: dict[str, str] = {}
    for file in files:
        for index, route in enumerate(file.rules.routes):
            origin = file.origin(("routes", index))
            if route.name in named:
                reason = f"route name {route.name!r} is already used ({named[route.name]})"
                problems.append(file.problem(("routes", index, "name"), reason))
            named.setdefault(route.name, origin)
            for position, word in enumerate(route.match.keyword or () if route.match else ()):
                if word in aliases:
                    meant = aliases[word]
                    reason = f"keyword {word!r} is an alias of {meant!r} ({defined[word]}): name {meant!r}"
                    problems.append(file.problem(("routes", index, "match", "keyword", position), reason))
            routes.append(route)
            origins.append(origin)
    return RuleSet(tuple(routes), aliases, version, tuple(origins))
