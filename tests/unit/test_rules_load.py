"""Routing rules: loading a file or a directory, the version, and every kind of error reported with
its exact file, line, column and place in the rules."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from smsroute.rules import RuleError, load_rules

HOOK = '[{webhook: {url: "http://127.0.0.1/h"}}]'


def write(directory: Path, name: str, yaml: str) -> Path:
    path = directory / name
    path.write_text(dedent(yaml).lstrip("\n"), encoding="utf-8")
    return path


def problems(tmp_path: Path, path: Path) -> list[str]:
    with pytest.raises(RuleError) as caught:
        load_rules(path)
    return [str(problem).replace(f"{tmp_path}/", "") for problem in caught.value.problems]


def test_a_directory_is_its_yaml_files_in_name_order(tmp_path: Path) -> None:
    write(tmp_path, "20-b.yml", f"routes: [{{name: b, actions: {HOOK}}}]")
    write(
        tmp_path,
        "10-a.yaml",
        f"aliases: {{STOP: ARRESTA}}\nroutes: [{{name: a, match: {{keyword: STOP}}, actions: {HOOK}}}]",
    )
    write(tmp_path, "15-aliases.yaml", "aliases: {STOP: [FERMA], INFO: [INFOS]}")
    write(tmp_path, ".#10-a.yaml", "not: rules")  # an editor's lock file
    write(tmp_path, "notes.txt", "not rules either")
    ruleset = load_rules(tmp_path)
    assert [route.name for route in ruleset.routes] == ["a", "b"]
    assert ruleset.aliases == {"ARRESTA": "STOP", "FERMA": "STOP", "INFOS": "INFO"}
    assert ruleset.keywords == {"STOP"}


def test_a_single_file_loads_alone(tmp_path: Path) -> None:
    write(tmp_path, "10-a.yaml", f"routes: [{{name: a, actions: {HOOK}}}]")
    path = write(tmp_path, "rules.yaml", f"routes: [{{name: only, actions: {HOOK}}}]")
    assert [route.name for route in load_rules(path).routes] == ["only"]


def test_version_follows_file_names_and_contents(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", f"routes: [{{name: a, actions: {HOOK}}}]")
    first = load_rules(tmp_path).version
    assert load_rules(tmp_path).version == first
    path.write_text(path.read_text() + "# a comment\n")
    second = load_rules(tmp_path).version
    path.rename(tmp_path / "b.yaml")
    third = load_rules(tmp_path).version
    assert len({first, second, third}) == 3
    assert all(len(version) == 12 and int(version, 16) >= 0 for version in (first, second, third))


def test_yaml_1_1_traps_are_plain_words_and_times(tmp_path: Path) -> None:
    """Unquoted 18:00 is not 1080 and NO is not false: the rules read YAML 1.2 core scalars."""
    path = write(
        tmp_path,
        "r.yaml",
        f"""
        aliases: {{NO: [NEI, NEIN, ON]}}
        routes:
          - name: r
            match: {{keyword: [NO, Y], time: {{from: 09:00, to: 18:00, tz: UTC}}}}
            actions: {HOOK}
    """,
    )
    ruleset = load_rules(path)
    assert ruleset.keywords == {"NO", "Y"}
    assert ruleset.aliases == {"NEI": "NO", "NEIN": "NO", "ON": "NO"}
    assert str(ruleset.routes[0].match.time[0]) == "every day 09:00-18:00 UTC"  # type: ignore[index, union-attr]


ROUTE = """
    routes:
      - name: r
        match:
          keyword: STOP
          {line}
        actions:
          - webhook: {{url: "http://127.0.0.1/h"}}
"""


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "time: {from: '09:00', to: '18:00', tz: Europe/Rom}",
            "r.yaml:5:46: routes[0].match.time.tz: unknown time zone 'Europe/Rom'",
        ),
        (
            "text: 'refund(s'",
            "r.yaml:5:13: routes[0].match.text: invalid regular expression 'refund(s': "
            "missing ), unterminated subpattern at position 6",
        ),
        ("keywrod: INFO", "r.yaml:5:7: routes[0].match: unknown key 'keywrod' (did you mean 'keyword'?)"),
        (
            "to: [+393201234567]",
            "r.yaml:5:12: routes[0].match.to[0]: write phone numbers in quotes "
            "(YAML read 393201234567 as a number and dropped any '+')",
        ),
        (
            "from: ['+39 abc']",
            "r.yaml:5:14: routes[0].match.from[0]: '+39 abc' is not a phone number or prefix "
            "(digits with an optional leading '+')",
        ),
        (
            "provider: Vonage",
            "r.yaml:5:17: routes[0].match.provider: 'Vonage' is not a provider or source name "
            "(lower case letters, digits, '_' and '-')",
        ),
        (
            "time: {from: '09:00', to: '25:00', tz: UTC}",
            "r.yaml:5:33: routes[0].match.time.to: '25:00' is not a time of day as HH:MM (00:00 to 23:59, in quotes)",
        ),
        (
            "time: {from: '09:00', to: '09:00', tz: UTC}",
            "r.yaml:5:13: routes[0].match.time: 'from' and 'to' are equal: the window would be empty",
        ),
        (
            "time: [{from: '09:00', to: '10:00', tz: UTC}, {days: [mon, funday], from: '09:00', to: '10:00', tz: UTC}]",
            "r.yaml:5:66: routes[0].match.time[1].days[1]: 'funday' is not a day of the week "
            "(mon, tue, wed, thu, fri, sat, sun)",
        ),
        ("time: {to: '10:00', tz: UTC}", "r.yaml:5:13: routes[0].match.time: missing required key 'from'"),
        ("source: []", "r.yaml:5:15: routes[0].match.source: must not be empty"),
    ],
)
def test_match_errors_point_at_the_value(tmp_path: Path, line: str, expected: str) -> None:
    path = write(tmp_path, "r.yaml", ROUTE.format(line=line))
    assert problems(tmp_path, path) == [expected]


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        (
            f"routes:\n  - name: r\n    match: {{keyword: STOP ALL}}\n    actions: {HOOK}\n",
            "r.yaml:3:22: routes[0].match.keyword: keyword 'STOP ALL' must be a single word of letters and digits",
        ),
        ("routes:\n  - name: r\n    match: {keyword: STOP}\n", "r.yaml:2:5: routes[0]: missing required key 'actions'"),
        (
            "routes:\n  - name: r\n    match: {keyword: null}\n    actions: " + HOOK + "\n",
            "r.yaml:3:12: routes[0].match: match has no criteria: leave 'match' out for a route that catches everything",
        ),
        (
            "routes:\n  - name: my route\n    actions: " + HOOK + "\n",
            "r.yaml:2:11: routes[0].name: String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'",
        ),
        (
            "routes:\n  - name: r\n    compliance: stop\n    actions: " + HOOK + "\n",
            "r.yaml:2:5: routes[0]: a compliance: stop route must match on keyword (e.g. keyword: STOP)",
        ),
        (
            "routes:\n  - name: r\n    match: {keyword: STOP}\n    compliance: halt\n    actions: " + HOOK + "\n",
            "r.yaml:4:17: routes[0].compliance: Input should be 'stop', 'start' or 'help'",
        ),
        (
            "routes:\n  - name: r\n    continue: maybe\n    actions: " + HOOK + "\n",
            "r.yaml:3:15: routes[0].continue: Input should be a valid boolean, unable to interpret input",
        ),
        (
            "routes:\n  - name: r\n    actions:\n      - webhok: {url: 'http://127.0.0.1/h'}\n",
            "r.yaml:4:9: routes[0].actions[0]: unknown key 'webhok' (did you mean 'webhook'?)",
        ),
        (
            "routes:\n  - name: r\n    actions:\n      - webhook: {url: 'http://x/h'}\n        sms_reply: {text: hi}\n",
            "r.yaml:4:9: routes[0].actions[0]: an action is exactly one of webhook, email, sms_reply "
            "(got sms_reply, webhook)",
        ),
        (
            "routes:\n  - name: r\n    actions:\n      - webhook:\n",
            "r.yaml:4:9: routes[0].actions[0]: an action is exactly one of webhook, email, sms_reply (got none)",
        ),
        (
            "routes:\n  - name: r\n    actions:\n      - webhook: {url: 'ftp://127.0.0.1/h'}\n",
            "r.yaml:4:24: routes[0].actions[0].webhook.url: 'ftp://127.0.0.1/h' is not an http:// or https:// URL",
        ),
        (
            "routes:\n  - name: r\n    actions:\n      - webhook: {url: 'http://x/h', secret: 'hunter2hunter2'}\n",
            "r.yaml:4:46: routes[0].actions[0].webhook.secret: secret must start with 'whsec_' "
            "(a Standard Webhooks secret)",
        ),
        (
            "routes:\n  - name: r\n    actions:\n      - webhook: {url: 'http://x/h', secret: 'whsec_c2hvcnQ='}\n",
            "r.yaml:4:46: routes[0].actions[0].webhook.secret: "
            "secret decodes to 5 bytes; Standard Webhooks wants 24 to 64",
        ),
        (
            "routes:\n  - name: r\n    actions:\n      - webhook: {url: 'http://x/h', headers: {Webhook-Id: x}}\n",
            "r.yaml:4:48: routes[0].actions[0].webhook.headers.Webhook-Id: "
            "header 'Webhook-Id' is set by smsroute and cannot be overridden",
        ),
        (
            "routes:\n  - name: r\n    actions:\n      - webhook: {url: 'http://x/h', timeout: soon}\n",
            "r.yaml:4:47: routes[0].actions[0].webhook.timeout: "
            "'soon' is not a duration (e.g. 30s, 5m, 1h30m, 1d, or seconds as a number)",
        ),
        (
            "routes:\n  - name: r\n    actions:\n      - webhook:\n          url: 'http://x/h'\n"
            "          retry: {schedule: [1m], max_attempts: 3}\n",
            "r.yaml:6:18: routes[0].actions[0].webhook.retry: give either 'schedule' or backoff settings, not both "
            "(also given: max_attempts)",
        ),
        (
            "routes:\n  - name: r\n    actions:\n      - sms_reply: {text: 'Hi {{ name }}'}\n",
            "r.yaml:4:27: routes[0].actions[0].sms_reply.text: unknown field '{{ name }}' in template; known: complete, "
            "encoding, extra, flags, from, id, keyword, media, parts, provider, provider_message_ids, provider_time, "
            "received_at, route, rules_version, source, text, to",
        ),
        (
            "routes:\n  - name: r\n    actions:\n      - email: {to: [ops], subject: 'Hi {{ from'}\n",
            "r.yaml:4:22: routes[0].actions[0].email.to[0]: 'ops' is not an email address\n"
            "r.yaml:4:37: routes[0].actions[0].email.subject: invalid template: unexpected end of template, "
            "expected 'end of print statement' (template line 1)",
        ),
        ("routes:\n  - name: r\n    actions: []\n", "r.yaml:3:14: routes[0].actions: must not be empty"),
        ("- name: r\n", "r.yaml:1:1: expected a mapping (key: value lines)"),
        (
            "routes: [{name: r, actions: " + HOOK + "}]\n---\nroutes: []\n",
            "r.yaml:2:1: YAML syntax: expected a single document in the stream (line 1), but found another document",
        ),
        (
            "routes:\n  - name: r\n    actions: [{webhook: {url: 'http://x/h'}}\n  - name: s\n",
            "r.yaml:4:3: YAML syntax: while parsing a flow sequence (line 3), did not find expected ',' or ']'",
        ),
        (
            "routes:\n  - name: r\n    name: s\n    actions: " + HOOK + "\n",
            "r.yaml:3:5: routes[0]: duplicate key 'name' (first at line 2)",
        ),
        ("", "r.yaml:1:1: empty file: expected 'routes:' and/or 'aliases:'"),
        ("aliases: {STOP: [HALT]}\n", "r.yaml: no routes: every message would be unrouted"),
    ],
)
def test_route_and_file_errors(tmp_path: Path, yaml: str, expected: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml, encoding="utf-8")
    assert problems(tmp_path, path) == expected.split("\n")


def test_a_secret_never_appears_in_errors(tmp_path: Path) -> None:
    action = "{webhook: {url: x, secret: 'whsec_!!secret!!'}}"
    path = write(tmp_path, "r.yaml", f"routes: [{{name: r, actions: [{action}]}}]")
    reported = "\n".join(problems(tmp_path, path))
    assert "not valid base64" in reported and "is not an http://" in reported
    assert "secret!!" not in reported


def test_every_problem_in_every_file_is_reported(tmp_path: Path) -> None:
    write(
        tmp_path,
        "10-a.yaml",
        """
        aliases:
          STOP: [STOPP, ARRESTA]
          FERMA: [ALT]
        routes:
          - name: opt-out
            match: {keyword: [STOP, STOPP]}
            actions: [{sms_reply: {text: Bye}}]
    """,
    )
    write(
        tmp_path,
        "20-b.yaml",
        """
        aliases:
          stop: [arresta, Ferma]
        routes:
          - name: opt-out
            actions: [{webhook: {url: "http://127.0.0.1/h"}}]
          - name: broken
            match: {text: "(", tz: UTC}
            actions: [{webhook: {url: "http://127.0.0.1/h"}}]
    """,
    )
    write(tmp_path, "30-c.yaml", "routes:\n  - name: x\n    actions: [\n")
    assert problems(tmp_path, tmp_path) == [
        "20-b.yaml:7:19: routes[1].match.text: invalid regular expression '(': "
        "missing ), unterminated subpattern at position 0",
        "20-b.yaml:7:24: routes[1].match: unknown key 'tz' (not valid at this level)",
        "30-c.yaml:4:1: YAML syntax: while parsing a flow node (line 4), did not find expected node content",
    ]
    write(
        tmp_path,
        "20-b.yaml",
        """
        aliases:
          stop: [arresta, Ferma]
        routes:
          - name: opt-out
            actions: [{webhook: {url: "http://127.0.0.1/h"}}]
    """,
    )
    (tmp_path / "30-c.yaml").unlink()
    assert problems(tmp_path, tmp_path) == [
        "20-b.yaml:2:10: aliases.stop[0]: alias 'ARRESTA' already means 'STOP' (10-a.yaml:2)",
        "20-b.yaml:2:19: aliases.stop[1]: 'FERMA' is an alias of 'STOP' and has aliases of its own: "
        "aliases do not chain",
        "10-a.yaml:6:29: routes[0].match.keyword[1]: keyword 'STOPP' is an alias of 'STOP' (10-a.yaml:2): name 'STOP'",
        "20-b.yaml:4:11: routes[0].name: route name 'opt-out' is already used (10-a.yaml:5)",
    ]


def test_a_missing_path_or_an_empty_directory(tmp_path: Path) -> None:
    assert problems(tmp_path, tmp_path / "nope") == ["nope: no such file or directory"]
    (tmp_path / "empty").mkdir()
    assert problems(tmp_path, tmp_path / "empty") == ["empty: no *.yaml or *.yml files in this directory"]
