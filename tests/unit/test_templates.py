"""Message templates: Jinja2 in a sandbox over the canonical message, checked when the rules load."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from smsroute.models.message import InboundMessage
from smsroute.rules import RuleError, load_rules
from smsroute.rules.model import Email
from smsroute.rules.templates import RenderError, check, render

MESSAGE = InboundMessage(
    id="m1",
    provider="agiletelecom",
    source="agiletelecom",
    sender="+393331234567",
    recipient="+393201234567",
    text="<b>Info</b> & prezzi",
    received_at=datetime(2026, 11, 21, 10, 0, tzinfo=UTC),
    keyword="INFO",
    route="info",
    extra={"carrier": "TIM"},
)


def test_fields_by_their_json_names_from_included() -> None:
    template = "{{ from }} -> {{ to }} [{{ keyword }}/{{ route }}] at {{ received_at }}: {{ text | upper }}"
    assert render(template, MESSAGE) == (
        "+393331234567 -> +393201234567 [INFO/info] at 2026-11-21T10:00:00.000Z: <B>INFO</B> & PREZZI"
    )


def test_the_message_json_renders_like_the_message() -> None:
    template = "{% if extra.carrier %}{{ extra.carrier }}: {% endif %}{{ text }}"
    assert render(template, MESSAGE.to_json()) == render(template, MESSAGE) == "TIM: <b>Info</b> & prezzi"


def test_text_is_not_escaped_html_is() -> None:
    assert render("{{ text }}", MESSAGE) == "<b>Info</b> & prezzi"
    assert render("<p>{{ text }}</p>", MESSAGE, html=True) == "<p>&lt;b&gt;Info&lt;/b&gt; &amp; prezzi</p>"


def test_sandbox_refuses_python_internals_and_changes() -> None:
    with pytest.raises(RenderError, match="SecurityError"):
        render("{{ text.__class__.__mro__ }}", MESSAGE)
    with pytest.raises(RenderError, match="SecurityError"):
        render("{{ flags.append('x') }}", MESSAGE)
    assert MESSAGE.flags == ()


def test_a_missing_key_fails_the_render_with_its_name() -> None:
    with pytest.raises(RenderError, match="has no attribute 'device'"):
        render("{{ extra.device }}", MESSAGE)


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("Hi {{ frm }}", "unknown field '{{ frm }}' (did you mean 'from'?) in template; known: complete, "),
        ("{{ txt }} {{ kw }}", "unknown field '{{ kw }}', '{{ txt }}' (did you mean 'text'?) in template"),
        ("SMS from {from}", "'{from}' is the old template syntax: write '{{ from }}' (templates are Jinja2)"),
        ("line\n{% if %}", "invalid template: Expected an expression, got 'end of statement block' (template line 2)"),
    ],
)
def test_mistakes_are_load_errors(template: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        check(template)
    assert str(caught.value).startswith(reason)


def test_literal_braces_and_loop_variables_are_fine() -> None:
    assert check('{ "json": 1 } {% for flag in flags %}{{ flag }}{% endfor %}')


def test_a_typo_in_a_rule_file_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "routes:\n  - name: r\n    actions:\n"
        "      - email:\n          to: [ops@example.com]\n          html: '<p>{{ txet }}</p>'\n"
    )
    with pytest.raises(RuleError) as caught:
        load_rules(tmp_path)
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.where) == (
        str(tmp_path / "r.yaml"),
        6,
        "routes[0].actions[0].email.html",
    )
    assert "'{{ txet }}' (did you mean 'text'?)" in problem.reason


def test_email_defaults_and_summary() -> None:
    email = Email.model_validate({"to": "ops@example.com"})
    assert (email.subject, email.body, email.html) == ("SMS from {{ from }}", "{{ text }}", None)
    assert email.summary(MESSAGE) == "to ops@example.com: 'SMS from +393331234567'"
    broken = Email.model_validate({"to": "ops@example.com", "subject": "{{ extra.device }}"})
    assert broken.summary(MESSAGE) == (
        "to ops@example.com: (template failed: UndefinedError: 'dict object' has no attribute 'device')"
    )


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ('{{ "x" * 10**9 }}', "repeating a value 1000000000 times would exceed 100000 characters"),
        ("{{ [1] * 10**8 }}", "repeating a value 100000000 times"),
        ("{{ 10 ** 100000 }}", "the power is too large"),
        ('{{ "x" | center(10**9) }}', "a width of 1000000000 is past the limit of 1000"),
        ("{{ text | indent(10**9) }}", "a width of 1000000000 is past the limit of 1000"),
        ('{{ "%1000000000d" | format(1) }}', "a format width or precision past 1000"),
        ('{{ "%*d" % (10**9, 1) }}', "taken from an argument"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "rendering took longer than 0.25 s",
        ),
        ('{% for i in range(100000) %}{{ "x" * 1000 }}{% endfor %}', "rendering took longer than 0.25 s|rendered"),
        ("{{ lipsum(10**6) }}", "'lipsum' is undefined"),
    ],
)
def test_rendering_is_bounded_in_time_and_size(template: str, reason: str) -> None:
    """A rule file cannot stall the engine or fill its memory: the render fails, for good, at once."""
    with pytest.raises(RenderError, match=reason):
        render(template, MESSAGE)


def test_padding_and_format_methods_of_strings_are_refused_when_the_rules_load() -> None:
    with pytest.raises(ValueError, match=r"'\.center\(\)' is not available in templates \(template line 1\)"):
        check("{{ text.center(10**9) }}")
    assert render('{{ "%-6s|" | format(keyword) }}{{ keyword | center(8) }}', MESSAGE) == "INFO  |  INFO  "
