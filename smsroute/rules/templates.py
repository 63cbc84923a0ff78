"""Message templates: Jinja2 in a sandbox, checked when the rules load, compiled once.

Rule authors write ``{{ from }}``, ``{{ text | truncate(100) }}``, ``{% if keyword == "INFO" %}``...
over the canonical message's fields (the webhook JSON names). The sandbox is immutable: a rule file
cannot reach Python internals or change the message. A name that is not a field is a load error
(``{{ frm }}``), never a blank in a customer's email; what only shows while rendering (an ``extra``
key one provider lacks) fails that delivery with the reason, for good (a retry renders the same).
Plain-text templates are not escaped; HTML templates escape every value they insert.

Rendering is bounded, so a rule file cannot stall the engine: a rendering gets
:data:`MAX_SECONDS` (on the main thread, where the engines render), produces at most
:data:`MAX_OUTPUT` characters, and no single operation may build a huge value (``"x" * 10**9``,
``9 ** 9 ** 9``, a padding filter to a billion characters). Python's string padding and ``format``
methods are not available in templates: the filters (``center``, ``format``...) do that, bounded.
"""

from __future__ import annotations

import difflib
import math
import re
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any

import jinja2
from jinja2 import StrictUndefined, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import do_center, do_format, do_indent, do_wordwrap
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import AfterValidator

from ..models.message import InboundMessage

MESSAGE_FIELDS = frozenset(InboundMessage("", "", "", "", "", "", datetime.fromtimestamp(0, UTC)).to_json())
"""The names a template may use: the canonical message's JSON fields (``from``, ``text``, ``keyword``...)."""

MAX_SECONDS = 0.25
"""A rendering that takes longer is stopped: templates render in microseconds."""
MAX_OUTPUT = 100_000
"""Characters a rendering may produce (an email body); more is a template gone wrong."""
MAX_WIDTH = 1000
"""The widest a padding filter or a format width may make one value."""
UNSAFE_STR_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map"})
"""String methods that pad to any width: a template uses the bounded filters instead."""
_WIDE_FORMAT = re.compile(r"%[-+ #0]*\d{4,}|%[-+ #0]*\*|\d{4,}")
"""A %-format asking for a width or precision past :data:`MAX_WIDTH`, or one taken from an argument."""


class _Bounded(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with the operations that can build a huge value checked first."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        del self.globals["lipsum"]  # lorem ipsum of any length: no use to a message
        self.filters.update(center=_width(do_center), indent=_width(do_indent), wordwrap=_width(do_wordwrap))
        self.filters["format"] = _checked_format

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return super().is_safe_attribute(obj, attr, value) and not (isinstance(obj, str) and attr in UNSAFE_STR_METHODS)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(times, int)
                    and len(sequence) * times > MAX_OUTPUT
                ):
                    raise SecurityError(f"repeating a value {times} times would exceed {MAX_OUTPUT} characters")
        elif operator == "**" and isinstance(left, int | float) and isinstance(right, int | float):
            if abs(left) > 1 and right > 0 and right * math.log2(abs(left)) > 4096:
                raise SecurityError("the power is too large")
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
        return super().call_binop(context, operator, left, right)


def _width(padding: Callable[..., str]) -> Callable[..., str]:
    """A padding filter refusing widths past :data:`MAX_WIDTH`."""

    def bounded(*args: Any, **kwargs: Any) -> str:
        for value in (*args[1:], *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_WIDTH:
                raise SecurityError(f"a width of {value} is past the limit of {MAX_WIDTH}")
        return padding(*args, **kwargs)

    return bounded


def _check_format(template: str) -> None:
    if _WIDE_FORMAT.search(template.replace("%%", "")):
        raise SecurityError(f"a format width or precision past {MAX_WIDTH}, or taken from an argument, is not allowed")


def _checked_format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_format(str(value))
    return do_format(value, *args, **kwargs)


_ENVIRONMENTS = {
    html: _Bounded(undefined=StrictUndefined, autoescape=html, keep_trailing_newline=True) for html in (False, True)
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
        tree = _ENVIRONMENTS[html].parse(source)
    except jinja2.TemplateSyntaxError as exc:
        reason = (exc.message or "syntax error").rstrip(".")
        raise ValueError(f"invalid template: {reason} (template line {exc.lineno})") from None
    names = meta.find_undeclared_variables(tree)
    for node in tree.find_all(nodes.Getattr):
        if node.attr in UNSAFE_STR_METHODS:
            raise ValueError(
                f"'.{node.attr}()' is not available in templates (template line {node.lineno}): "
                "use the filters (center, format, ...), which are bounded"
            )
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
        with _time_limit(MAX_SECONDS):
            text = compiled(template, html).render(fields)
    except _TooSlow:
        raise RenderError(f"template failed: rendering took longer than {MAX_SECONDS:g} s") from None
    except Exception as exc:  # a template is the rule author's code: any failure is that template's
        raise RenderError(f"template failed: {type(exc).__name__}: {exc}") from None
    if len(text) > MAX_OUTPUT:
        raise RenderError(f"template failed: it rendered {len(text)} characters, more than {MAX_OUTPUT}")
    return text


class _TooSlow(Exception):
    """Raised into a rendering when its time is up."""


def _expire(signum: int, frame: object) -> None:
    raise _TooSlow()


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (a real-time timer's SIGALRM, whose handler is set once
    and only ever fires inside such a block). Signals reach the main thread only: elsewhere (tests,
    tools) the block runs unbounded in time, bounded in size still."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGALRM) is not _expire:
        signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


Template = Annotated[str, AfterValidator(check)]
"""A plain-text template (SMS text, email subject and body)."""
HtmlTemplate = Annotated[str, AfterValidator(_html)]
"""An HTML template: every inserted value is escaped."""
