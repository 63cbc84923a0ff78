"""Message templates: Jinja2 in a sandbox, checked when the rules load, compiled once.

Rule authors write ``{{ from }}``, ``{{ text | truncate(100) }}``, ``{% if keyword == "INFO" %}``...
over the canonical message's fields (the webhook JSON names). The sandbox is immutable: a rule file
cannot reach Python internals or change the message. A name that is not a field is a load error
(``{{ frm }}``), never a blank in a customer's email; what only shows while rendering (an ``extra``
key one provider lacks) fails that delivery with the reason, for good (a retry renders the same).
Plain-text templates are not escaped; HTML templates escape every value they insert.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any

import jinja2
from jinja2 import StrictUndefined, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import AfterValidator

from ..message import InboundMessage

MESSAGE_FIELDS = frozenset(InboundMessage("", "", "", "", "", "", datetime.fromtimestamp(0, UTC)).to_json())
"""The names a template may use: the canonical message's JSON fields (``from``, ``text``, ``keyword``...)."""

_ENVIRONMENTS = {
    html: ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=html, keep_trailing_newline=True)
    for html in (False, True)
}
_OLD_SYNTAX = re.compile(r"(?<!\{)\{\s*(" + "|".join(sorted(MESSAGE_FIELDS)) + r")\s*(?:![rsa])?\}(?!\})")


class RenderError(ValueError):
    """A template that failed on one message; retrying renders the same, so it is final."""


@lru_cache(maxsize=4096)
def compiled(source: str, html: bool = False) -> jinja2.Template:
    """The template, parsed and compiled once per process (rule reloads reuse unchanged ones)."""
    return _ENVIRONMENTS[html].from_string(source)


def check(source: str, html: bool = False) -> str:
    """``source`` when it is a template of message fields; else ``ValueError`` for the rule author."""
    if old := _OLD_SYNTAX.search(source):
        raise ValueError(f"{old[0]!r} is the old template syntax: write '{{{{ {old[1]} }}}}' (templates are Jinja2)")
    try:
        names = meta.find_undeclared_variables(_ENVIRONMENTS[html].parse(source))
    except jinja2.TemplateSyntaxError as exc:
        reason = (exc.message or "syntax error").rstrip(".")
        raise ValueError(f"invalid template: {reason} (template line {exc.lineno})") from None
    if unknown := sorted(names - MESSAGE_FIELDS):
        listed = ", ".join(_unknown(name) for name in unknown)
        raise ValueError(f"unknown field {listed} in template; known: {', '.join(sorted(MESSAGE_FIELDS))}")
    compiled(source, html)
    return source


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, MESSAGE_FIELDS, n=1)
    return f"'{{{{ {name} }}}}'" + (f" (did you mean '{close[0]}'?)" if close else "")


def _html(source: str) -> str:
    return check(source, html=True)


def render(template: str, message: InboundMessage | Mapping[str, Any], *, html: bool = False) -> str:
    """``template`` filled in from ``message`` (a canonical message or its JSON); :class:`RenderError`
    when the template fails on it."""
    fields = message.to_json() if isinstance(message, InboundMessage) else message
    try:
        return compiled(template, html).render(fields)
    except Exception as exc:  # a template is the rule author's code: any failure is that template's
        raise RenderError(f"template failed: {type(exc).__name__}: {exc}") from None


Template = Annotated[str, AfterValidator(check)]
"""A plain-text template (SMS text, email subject and body)."""
HtmlTemplate = Annotated[str, AfterValidator(_html)]
"""An HTML template: every inserted value is escaped."""
