"""The routing rule model: what a rule file may say, validated strictly so that typos fail loudly.

Every model forbids unknown keys. Values are normalised once, here, so matching compares plain
strings: keywords upper-cased without accents, phone numbers without spaces, regexes compiled, time
zones resolved. Validators raise ``ValueError`` with a reason written for the rule author; the
loader puts file, line and column in front of it.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from datetime import datetime, time
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

from ..config import INGRESS_NAME, EmailAddress, number_or_prefix
from ..models.message import InboundMessage
from .templates import HtmlTemplate, RenderError, Template, render

_WORD = re.compile(r"[^\W_]+")
ROUTE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "webhook-id", "webhook-timestamp", "webhook-signature"}
)


def fold(word: str) -> str:
    """Upper case without accents or compatibility forms: ``Stòp`` and ``ｓｔｏｐ`` both give ``STOP``."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(char for char in decomposed if not unicodedata.combining(char)).upper()


def first_word(text: str) -> str:
    """The message's keyword as written: its first run of letters and digits, folded (``"¡Stop!"`` -> ``STOP``)."""
    found = _WORD.search(unicodedata.normalize("NFC", text))
    return fold(found[0]) if found else ""


def _listed(value: Any) -> Any:
    """A single value where a list is expected is a list of one (``keyword: STOP``)."""
    return [value] if isinstance(value, str | dict) else value


def _keyword(value: str) -> str:
    word = first_word(value)
    if not word or word != fold(unicodedata.normalize("NFC", value.strip())):
        raise ValueError(f"keyword {value!r} must be a single word of letters and digits")
    return word


def _single_word(value: str) -> str:
    """An alias key stays as written, so that the loader can point at it; it is folded when merged."""
    _keyword(value)
    return value


def _number(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"write phone numbers in quotes (YAML read {value} as a number and dropped any '+')")
    return number_or_prefix(value) if isinstance(value, str) else value


def _name(value: str) -> str:
    if not re.match(INGRESS_NAME, value):
        raise ValueError(f"{value!r} is not a provider or source name (lower case letters, digits, '_' and '-')")
    return value


def _regex(value: Any) -> Any:
    """Compiled case-insensitive at load: ``(?-i:...)`` makes a part case-sensitive again."""
    if not isinstance(value, str):
        return value
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None


def _zone(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None


def _clock(value: Any) -> Any:
    if isinstance(value, str) and (found := re.fullmatch(r"([01]?[0-9]|2[0-3]):([0-5][0-9])", value.strip())):
        return time(int(found[1]), int(found[2]))
    raise ValueError(f"{value!r} is not a time of day as HH:MM (00:00 to 23:59, in quotes)")


_DAY_NAMES = {day: day for day in WEEKDAYS} | {
    name: name[:3] for name in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
}


def _day(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in _DAY_NAMES:
        return _DAY_NAMES[value.strip().lower()]
    raise ValueError(f"{value!r} is not a day of the week ({', '.join(WEEKDAYS)})")


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


_AMOUNT = r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)"


def _duration(value: Any) -> Any:
    """Seconds as a number, or amounts with units: ``500ms``, ``30s``, ``5m``, ``2h``, ``1d``, ``1h30m``."""
    if isinstance(value, str):
        compact = value.replace(" ", "")
        if not re.fullmatch(f"(?:{_AMOUNT})+", compact):
            raise ValueError(f"{value!r} is not a duration (e.g. 30s, 5m, 1h30m, 1d, or seconds as a number)")
        return sum(float(amount) * _UNITS[unit] for amount, unit in re.findall(_AMOUNT, compact))
    return value


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


def _secret(value: SecretStr) -> SecretStr:
    """Standard Webhooks: ``whsec_`` and base64 of 24 to 64 random bytes. The value never appears in errors."""
    raw = value.get_secret_value()
    if not raw.startswith("whsec_"):
        raise ValueError("secret must start with 'whsec_' (a Standard Webhooks secret)")
    try:
        key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ValueError("secret after 'whsec_' is not valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"secret decodes to {len(key)} bytes; Standard Webhooks wants 24 to 64")
    return value


def _header(value: str) -> str:
    if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", value):
        raise ValueError(f"{value!r} is not a valid header name")
    if value.lower() in RESERVED_HEADERS:
        raise ValueError(f"header {value!r} is set by smsroute and cannot be overridden")
    return value


def _header_value(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("header values cannot contain line breaks")
    return value


Keyword = Annotated[str, AfterValidator(_keyword)]
Keywords = Annotated[tuple[Keyword, ...], BeforeValidator(_listed), Field(min_length=1)]
Numbers = Annotated[tuple[Annotated[str, BeforeValidator(_number)], ...], BeforeValidator(_listed), Field(min_length=1)]
Names = Annotated[tuple[Annotated[str, AfterValidator(_name)], ...], BeforeValidator(_listed), Field(min_length=1)]
Regex = Annotated[re.Pattern[str], BeforeValidator(_regex)]
Clock = Annotated[time, BeforeValidator(_clock)]
Day = Annotated[str, BeforeValidator(_day)]
Seconds = Annotated[float, BeforeValidator(_duration)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class TimeWindow(Strict):
    """Local wall-clock hours in ``tz`` (DST-correct). A window whose ``to`` is earlier than its ``from``
    crosses midnight; ``days`` name the day a window starts on (all days when left out)."""

    days: Annotated[tuple[Day, ...], BeforeValidator(_listed), Field(min_length=1)] = WEEKDAYS
    start: Clock = Field(alias="from")
    end: Clock = Field(alias="to")
    tz: Annotated[ZoneInfo, BeforeValidator(_zone)]

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError("'from' and 'to' are equal: the window would be empty")
        return self

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(self.tz)
        clock, day = local.time(), local.weekday()
        if self.start < self.end:
            return WEEKDAYS[day] in self.days and self.start <= clock < self.end
        if clock >= self.start:
            return WEEKDAYS[day] in self.days
        return clock < self.end and WEEKDAYS[day - 1] in self.days

    def __str__(self) -> str:
        return f"{_day_ranges(self.days)} {self.start:%H:%M}-{self.end:%H:%M} {self.tz.key}"


def _day_ranges(days: tuple[str, ...]) -> str:
    """``mon-fri,sun`` rather than seven names."""
    chosen = sorted({WEEKDAYS.index(day) for day in days})
    if len(chosen) == len(WEEKDAYS):
        return "every day"
    runs: list[list[int]] = []
    for day in chosen:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(WEEKDAYS[run[0]] + (f"-{WEEKDAYS[run[-1]]}" if len(run) > 1 else "") for run in runs)


class Match(Strict):
    """Every criterion given must hold; lists mean "any of these"."""

    keyword: Keywords | None = None
    text: Regex | None = None
    to: Numbers | None = None
    sender: Numbers | None = Field(None, alias="from")
    provider: Names | None = None
    source: Names | None = None
    time: Annotated[tuple[TimeWindow, ...], BeforeValidator(_listed), Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _something(self) -> Match:
        if all(getattr(self, name) is None for name in Match.model_fields):
            raise ValueError("match has no criteria: leave 'match' out for a route that catches everything")
        return self


MAX_ATTEMPTS = 100
Delay = Annotated[Seconds, Field(gt=0, le=7 * 86400)]


class Retry(Strict):
    """When a failed delivery is tried again: an explicit ``schedule`` of delays, or exponential backoff
    (``initial`` doubling by ``factor`` up to ``max``, ``max_attempts`` in all). The defaults retry for
    about a day: 18 attempts, the last about 23.7 hours after the first."""

    schedule: Annotated[tuple[Delay, ...], Field(max_length=MAX_ATTEMPTS - 1)] | None = None
    max_attempts: int = Field(18, ge=1, le=MAX_ATTEMPTS)
    initial: Annotated[Seconds, Field(gt=0, le=86400)] = 10.0
    factor: float = Field(2.0, ge=1, le=10)
    ceiling: Delay = Field(3 * 3600.0, alias="max")

    @model_validator(mode="after")
    def _one_style(self) -> Retry:
        backoff = self.model_fields_set - {"schedule"}
        if self.schedule is not None and backoff:
            names = ", ".join(sorted(Retry.model_fields[name].alias or name for name in backoff))
            raise ValueError(f"give either 'schedule' or backoff settings, not both (also given: {names})")
        return self

    @property
    def delays(self) -> tuple[float, ...]:
        """Seconds to wait before each retry; its length is the number of retries."""
        if self.schedule is not None:
            return self.schedule
        return tuple(min(self.initial * self.factor**n, self.ceiling) for n in range(self.max_attempts - 1))


class ActionSettings(Strict):
    retry: Retry = Retry()


class Webhook(ActionSettings):
    """POST of the canonical message as JSON, signed with Standard Webhooks headers when ``secret`` is set."""

    url: Annotated[str, AfterValidator(_url)]
    secret: Annotated[SecretStr, AfterValidator(_secret)] | None = None
    timeout: Annotated[Seconds, Field(gt=0, le=300)] = 10.0
    headers: dict[Annotated[str, AfterValidator(_header)], Annotated[str, AfterValidator(_header_value)]] = {}

    def summary(self, message: InboundMessage) -> str:
        return f"POST {self.url}" + (" (signed)" if self.secret else "")


class Email(ActionSettings):
    """An email of the message to fixed recipients: templated subject and plain-text body, and an
    optional HTML alternative (its inserted values escaped)."""

    to: Annotated[tuple[EmailAddress, ...], BeforeValidator(_listed), Field(min_length=1)]
    subject: Template = "SMS from {{ from }}"
    body: Template = "{{ text }}"
    html: HtmlTemplate | None = None

    def summary(self, message: InboundMessage) -> str:
        return f"to {', '.join(self.to)}: {_preview(self.subject, message)}"


class SmsReply(ActionSettings):
    """An SMS answer to the sender, from the number the message was sent to."""

    text: Annotated[Template, Field(min_length=1)]

    def summary(self, message: InboundMessage) -> str:
        return f"to {message.sender or '(sender)'}: {_preview(self.text, message)}"


def _preview(template: str, message: InboundMessage) -> str:
    """The rendered text for rule authors, or why it does not render for this message."""
    try:
        return repr(render(template, message))
    except RenderError as exc:
        return f"({exc})"


ActionKind = Literal["webhook", "email", "sms_reply"]


class Action(Strict):
    """One delivery per matching message: exactly one of ``webhook``, ``email``, ``sms_reply``."""

    webhook: Webhook | None = None
    email: Email | None = None
    sms_reply: SmsReply | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Action:
        given = sorted(name for name in self.model_fields_set if getattr(self, name) is not None)
        if len(given) != 1:
            found = f"got {', '.join(given)}" if given else "got none"
            raise ValueError(f"an action is exactly one of webhook, email, sms_reply ({found})")
        return self

    @property
    def kind(self) -> ActionKind:
        kinds: tuple[ActionKind, ...] = ("webhook", "email", "sms_reply")
        return next(kind for kind in kinds if getattr(self, kind) is not None)

    @property
    def settings(self) -> Webhook | Email | SmsReply:
        settings: Webhook | Email | SmsReply = getattr(self, self.kind)
        return settings


Compliance = Literal["stop", "start", "help"]
"""What a compliance route does: ``stop`` puts the sender on the opt-out list (no auto-replies),
``start`` takes it off again, ``help`` only answers. Their own replies reach opted-out numbers."""


class Route(Strict):
    name: Annotated[str, Field(pattern=ROUTE_NAME)]
    description: str = ""
    match: Match | None = None
    proceed: bool = Field(False, alias="continue")
    """``continue: true``: later routes are still checked, and every match delivers (fan-out)."""
    compliance: Compliance | None = None
    actions: Annotated[tuple[Action, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _compliance_by_keyword(self) -> Route:
        if self.compliance is not None and (self.match is None or self.match.keyword is None):
            # A STOP route that caught every message would opt out everyone who writes in.
            raise ValueError(f"a compliance: {self.compliance} route must match on keyword (e.g. keyword: STOP)")
        return self


class RuleFile(Strict):
    """One YAML file. ``aliases`` maps a canonical keyword to other words that mean it."""

    aliases: dict[Annotated[str, AfterValidator(_single_word)], Keywords] = {}
    routes: tuple[Route, ...] = ()
