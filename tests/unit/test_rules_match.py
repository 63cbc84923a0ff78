"""Routing rules: matching every criterion both ways, keyword folding and aliases, order, fan-out,
time windows (midnight, time zones, DST), explain, and the worked example set in routing_rules/."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from textwrap import dedent

import pytest

from smsroute.models.message import InboundMessage
from smsroute.rules import RuleSet, first_word, load_rules
from smsroute.rules.model import Retry

EXAMPLES = Path(__file__).resolve().parents[2] / "routing_rules"
SATURDAY_10_ROME = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def message(text: str = "hello", **fields: object) -> InboundMessage:
    values: dict[str, object] = {
        "id": "m1",
        "provider": "vonage",
        "source": "vonage",
        "sender": "+393331234567",
        "recipient": "+393201234567",
        "text": text,
        "received_at": SATURDAY_10_ROME,
    }
    return InboundMessage(**{**values, **fields})  # type: ignore[arg-type]


def rules(tmp_path: Path, yaml: str) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(dedent(yaml), encoding="utf-8")
    return load_rules(path)


def matched(ruleset: RuleSet, text: str = "hello", **fields: object) -> list[str]:
    return [route.name for route in ruleset.match(message(text, **fields)).routes]


def only(tmp_path: Path, match: str) -> RuleSet:
    """One route with the given match block, and nothing else."""
    return rules(
        tmp_path,
        f"""
        routes:
          - name: r
            match: {match}
            actions: [{{webhook: {{url: "http://127.0.0.1/r"}}}}]
    """,
    )


@pytest.mark.parametrize(
    "text", ["STOP", "stop", "Stòp", "STOP!", "¡Stop por favor", "  stop,grazie", "ｓｔｏｐ", "Sto\u0300p"]
)
def test_keyword_ignores_case_accents_punctuation_and_width(tmp_path: Path, text: str) -> None:
    assert matched(only(tmp_path, "{keyword: stop}"), text) == ["r"]


@pytest.mark.parametrize("text", ["STOPS", "please stop", "", "S TOP", "!!!"])
def test_keyword_is_the_whole_first_word(tmp_path: Path, text: str) -> None:
    assert matched(only(tmp_path, "{keyword: STOP}"), text) == []


def test_first_word_folds_and_splits_on_anything_but_letters_and_digits() -> None:
    assert [first_word(text) for text in ("Caffè latte", "#info2026 now", "straße", "", "...")] == [
        "CAFFE",
        "INFO2026",
        "STRASSE",
        "",
        "",
    ]


def test_aliases_resolve_to_the_canonical_keyword(tmp_path: Path) -> None:
    ruleset = rules(
        tmp_path,
        """
        aliases: {STOP: [STOPP, Arrèsta, ferma]}
        routes:
          - name: opt-out
            match: {keyword: STOP}
            actions: [{webhook: {url: "http://127.0.0.1/optout"}}]
    """,
    )
    routing = ruleset.match(message("Arresta per favore"))
    assert ([route.name for route in routing.routes], routing.keyword) == (["opt-out"], "STOP")
    assert ruleset.match(message("FERMA!")).keyword == "STOP"
    assert ruleset.match(message("stopp")).keyword == "STOP"
    assert ruleset.match(message("Basta")).keyword == "BASTA"
    assert matched(ruleset, "Basta") == []


def test_text_regex_is_searched_case_insensitively(tmp_path: Path) -> None:
    ruleset = only(tmp_path, r"""{text: '\brefund\b'}""")
    assert matched(ruleset, "I want a REFUND now") == ["r"]
    assert matched(ruleset, "refunded") == []


@pytest.mark.parametrize(
    ("match", "hit", "miss"),
    [
        ('{to: ["+393201234567", "4321"]}', {"recipient": "4321"}, {"recipient": "+39320123456"}),
        ('{to: "+39 320 123 4567"}', {"recipient": "+393201234567"}, {"recipient": "393201234567"}),
        ('{from: ["+39", "+41"]}', {"sender": "+41791234567"}, {"sender": "+447700900123"}),
        ("{provider: [vonage, kaleyra]}", {"provider": "kaleyra"}, {"provider": "twilio"}),
        ("{source: shop-it}", {"source": "shop-it"}, {"source": "shop"}),
    ],
)
def test_each_criterion_matches_and_does_not(tmp_path: Path, match: str, hit: dict, miss: dict) -> None:
    ruleset = only(tmp_path, match)
    assert matched(ruleset, **hit) == ["r"]
    assert matched(ruleset, **miss) == []


def test_all_criteria_must_hold(tmp_path: Path) -> None:
    ruleset = only(tmp_path, '{keyword: INFO, from: "+39", provider: vonage}')
    assert matched(ruleset, "info") == ["r"]
    assert matched(ruleset, "info", provider="kaleyra") == []
    assert matched(ruleset, "info", sender="+447700900123") == []
    assert matched(ruleset, "hello") == []


ORDERED = """
    routes:
      - name: audit
        match: {keyword: [STOP, INFO]}
        continue: true
        actions: [{webhook: {url: "http://127.0.0.1/audit"}}, {email: {to: audit@example.com}}]
      - name: stop-it
        match: {keyword: STOP, to: "+393201234567"}
        actions: [{sms_reply: {text: "Bye"}}]
      - name: stop-elsewhere
        match: {keyword: STOP}
        actions: [{webhook: {url: "http://127.0.0.1/stop"}}]
      - name: italians
        match: {from: "+39"}
        continue: true
        actions: [{webhook: {url: "http://127.0.0.1/it"}}]
      - name: default
        actions: [{webhook: {url: "http://127.0.0.1/inbox"}}]
"""


def test_first_match_wins_continue_fans_out_and_catch_all_takes_the_rest(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, ORDERED)
    assert matched(ruleset, "stop") == ["audit", "stop-it"]
    assert matched(ruleset, "stop", recipient="+390000") == ["audit", "stop-elsewhere"]
    assert matched(ruleset, "info") == ["audit", "italians", "default"]
    assert matched(ruleset, "info", sender="+447700900123") == ["audit", "default"]
    assert matched(ruleset, "hello") == ["italians", "default"]
    deliveries = ruleset.match(message("stop")).actions
    assert [(d.route.name, d.number, d.action.kind) for d in deliveries] == [
        ("audit", 1, "webhook"),
        ("audit", 2, "email"),
        ("stop-it", 1, "sms_reply"),
    ]


def test_keyword_routes_keep_their_place_among_scanned_routes(tmp_path: Path) -> None:
    ruleset = rules(
        tmp_path,
        """
        routes:
          - {name: early, match: {from: "+39"}, continue: true, actions: [{webhook: {url: "http://127.0.0.1/a"}}]}
          - {name: kw, match: {keyword: STOP}, continue: true, actions: [{webhook: {url: "http://127.0.0.1/b"}}]}
          - {name: late, match: {from: "+39"}, actions: [{webhook: {url: "http://127.0.0.1/c"}}]}
          - {name: kw-after-late, match: {keyword: STOP}, actions: [{webhook: {url: "http://127.0.0.1/d"}}]}
    """,
    )
    assert matched(ruleset, "stop") == ["early", "kw", "late"]
    assert matched(ruleset, "stop", sender="+41") == ["kw", "kw-after-late"]


def test_no_match_and_no_catch_all_is_unrouted(tmp_path: Path) -> None:
    routing = only(tmp_path, "{keyword: STOP}").match(message("hello there"))
    assert (routing.keyword, routing.routes, routing.actions) == ("HELLO", (), ())


OFFICE = '{time: {days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00", tz: Europe/Rome}}'


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        ("2026-11-20T08:00:00+00:00", True),  # Friday 09:00 in Rome (CET, UTC+1): the window opens
        ("2026-11-20T07:59:59+00:00", False),  # Friday 08:59:59 in Rome
        ("2026-11-20T16:59:00+00:00", True),  # Friday 17:59
        ("2026-11-20T17:00:00+00:00", False),  # Friday 18:00: the end is excluded
        ("2026-11-21T10:00:00+00:00", False),  # Saturday
        ("2026-07-10T07:30:00+00:00", True),  # summer (CEST, UTC+2): 09:30 in Rome
        ("2026-01-09T07:30:00+00:00", False),  # winter, same UTC time: 08:30 in Rome
        ("2026-11-20T09:00:00-05:00", True),  # any offset in the message is converted: 15:00 in Rome
    ],
)
def test_time_window_is_local_wall_clock_in_its_zone(tmp_path: Path, moment: str, inside: bool) -> None:
    assert matched(only(tmp_path, OFFICE), received_at=datetime.fromisoformat(moment)) == (["r"] if inside else [])


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        ("2026-11-20T22:00:00+01:00", True),  # Friday 22:00, the window starts on Friday
        ("2026-11-21T05:59:00+01:00", True),  # Saturday early morning belongs to Friday's window
        ("2026-11-21T06:00:00+01:00", False),
        ("2026-11-21T23:00:00+01:00", False),  # Saturday night: the window does not start on Saturday
        ("2026-11-23T02:00:00+01:00", True),  # Monday 02:00 belongs to Sunday's window
        ("2026-11-20T02:00:00+01:00", True),  # Friday 02:00 belongs to Thursday's window
        ("2026-11-20T12:00:00+01:00", False),
    ],
)
def test_time_window_crossing_midnight_belongs_to_the_day_it_starts(tmp_path: Path, moment: str, inside: bool) -> None:
    window = '{time: {days: [mon, tue, wed, thu, fri, sun], from: "22:00", to: "06:00", tz: Europe/Rome}}'
    assert matched(only(tmp_path, window), received_at=datetime.fromisoformat(moment)) == (["r"] if inside else [])


def test_time_window_on_a_dst_change_night(tmp_path: Path) -> None:
    """Rome jumps from 02:00 to 03:00 on 2026-03-29: 01:30 UTC is 03:30 local, not 02:30."""
    ruleset = only(tmp_path, '{time: {from: "02:00", to: "03:00", tz: Europe/Rome}}')
    assert matched(ruleset, received_at=datetime(2026, 3, 29, 0, 30, tzinfo=UTC)) == []  # 01:30 CET
    assert matched(ruleset, received_at=datetime(2026, 3, 29, 1, 30, tzinfo=UTC)) == []  # 03:30 CEST
    assert matched(ruleset, received_at=datetime(2026, 3, 30, 0, 30, tzinfo=UTC)) == ["r"]  # 02:30 CEST


def test_several_windows_any_of_them(tmp_path: Path) -> None:
    ruleset = only(
        tmp_path,
        """{time: [{days: sat, from: "09:00", to: "13:00", tz: Europe/Rome},
                                       {days: Sunday, from: "10:00", to: "11:00", tz: Asia/Tokyo}]}""",
    )
    assert matched(ruleset, received_at=SATURDAY_10_ROME) == ["r"]
    assert matched(ruleset, received_at=datetime(2026, 11, 22, 1, 30, tzinfo=UTC)) == ["r"]  # Sunday 10:30 Tokyo
    assert matched(ruleset, received_at=datetime(2026, 11, 22, 9, 0, tzinfo=UTC)) == []


def test_explain_says_why_for_every_route(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, ORDERED)
    explanation = ruleset.explain(message("Stòp now", recipient="+390000"))
    assert explanation.routing == ruleset.match(message("Stòp now", recipient="+390000"))
    verdicts = {verdict.route.name: verdict for verdict in explanation.verdicts}
    assert [(name, verdict.status) for name, verdict in verdicts.items()] == [
        ("audit", "match"),
        ("stop-it", "no"),
        ("stop-elsewhere", "match"),
        ("italians", "shadowed"),
        ("default", "shadowed"),
    ]
    assert [str(check) for check in verdicts["stop-it"].checks] == [
        "keyword: 'STOP', wanted STOP",
        "to: '+390000', wanted +393201234567",
    ]
    assert [check.held for check in verdicts["stop-it"].checks] == [True, False]
    assert verdicts["italians"].shadowed_by == "stop-elsewhere"
    assert verdicts["audit"].origin == f"{tmp_path / 'rules.yaml'}:3"
    assert explanation.to_json()["deliveries"] == [
        {"route": "audit", "action": 1, "kind": "webhook", "summary": "POST http://127.0.0.1/audit"},
        {"route": "audit", "action": 2, "kind": "email", "summary": "to audit@example.com: 'SMS from +393331234567'"},
        {"route": "stop-elsewhere", "action": 1, "kind": "webhook", "summary": "POST http://127.0.0.1/stop"},
    ]


def test_explain_time_and_text_show_the_values(tmp_path: Path) -> None:
    ruleset = only(tmp_path, OFFICE[:-1] + r", text: 'ref(und)?'}")
    [verdict] = ruleset.explain(message("a refund please")).verdicts
    assert verdict.status == "no"
    assert [str(check) for check in verdict.checks] == [
        "text: 'a refund please' (found 'refund'), wanted a match for /ref(und)?/ (case-insensitive)",
        "time: Sat 2026-11-21 10:00 Europe/Rome, wanted mon-fri 09:00-18:00 Europe/Rome",
    ]


def test_templates_render_the_canonical_message_with_keyword_and_route(tmp_path: Path) -> None:
    ruleset = rules(
        tmp_path,
        """
        aliases: {INFO: INFORMAZIONI}
        routes:
          - name: info
            match: {keyword: INFO}
            actions: [{sms_reply: {text: "{{ keyword }} via {{ route }}: thanks {{ from }}, we got '{{ text }}'"}}]
    """,
    )
    explanation = ruleset.explain(message("informazioni prezzi"))
    [delivery] = explanation.routing.actions
    assert delivery.action.settings.summary(explanation.delivered(delivery)) == (
        "to +393331234567: \"INFO via info: thanks +393331234567, we got 'informazioni prezzi'\""
    )


def test_default_retry_spans_about_a_day_and_overrides_replace_it() -> None:
    delays = Retry().delays
    assert (len(delays) + 1, delays[:3], max(delays)) == (18, (10.0, 20.0, 40.0), 3 * 3600)
    assert 22 * 3600 < sum(delays) < 26 * 3600
    assert Retry.model_validate({"schedule": ["1m", "1h30m", 90]}).delays == (60.0, 5400.0, 90.0)
    assert Retry.model_validate({"max_attempts": 4, "initial": "1s", "factor": 3, "max": "5s"}).delays == (1, 3, 5)
    assert Retry.model_validate({"max_attempts": 1}).delays == ()


def test_worked_example_set_loads_and_routes_as_documented() -> None:
    ruleset = load_rules(EXAMPLES)
    assert [route.name for route in ruleset.routes] == [
        "opt-out-audit",
        "opt-out",
        "opt-in",
        "help",
        "info",
        "office-hours",
        "night-shift",
        "complaints",
        "everything-else",
    ]
    assert matched(ruleset, "Arrêt") == ["opt-out-audit", "opt-out"]
    assert matched(ruleset, "Abmelden", recipient="+4915112345678") == ["opt-out-audit", "opt-out"]
    assert [route.compliance for route in ruleset.routes[1:4]] == ["stop", "start", "help"]
    assert (matched(ruleset, "Riattiva"), matched(ruleset, "aiuto!")) == (["opt-in"], ["help"])
    assert matched(ruleset, "Informazioni?") == ["info"]
    assert [d.action.kind for d in ruleset.match(message("info")).actions] == ["webhook", "email", "sms_reply"]
    assert matched(ruleset, "hello") == ["office-hours"]
    assert matched(ruleset, "hello", received_at=datetime(2026, 11, 21, 13, 0, tzinfo=UTC)) == ["everything-else"]
    night = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)  # 23:00 in Buenos Aires
    assert matched(ruleset, "hola", sender="+5491123456789", recipient="4321", received_at=night) == ["night-shift"]
    assert matched(ruleset, "Reclamo!", recipient="4321", provider="kaleyra") == ["complaints"]
    assert matched(ruleset, "Reclamo!", recipient="4321", provider="twilio") == ["everything-else"]
    assert len(ruleset.version) == 12
