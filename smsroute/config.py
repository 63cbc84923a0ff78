"""Configuration: one TOML file plus ``SMSROUTE_*`` environment variables, validated at start-up.

Precedence, highest first: command-line options, environment variables, the TOML file, defaults.
Nested keys use ``__`` in the environment: ``SMSROUTE_INGRESS__VONAGE__SIGNATURE_SECRET``.
"""

from __future__ import annotations

import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.networks import IPvAnyNetwork
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from .smpp.config import SmppConfig

INGRESS_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
EMAIL_ADDRESS = re.compile(r"[^@\s<>,]+@[^@\s<>,]+\.[^@\s<>,]+")


TOPIC_PREFIX = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$"
"""Kafka's legal topic characters; the prefix is followed by ``.raw.v1`` and the like."""
KAFKA_MAX_BODY = 1024 * 1024 - 64 * 1024
"""Largest request body with Kafka: the record (body and the event's other fields) stays under 1 MiB."""

_file_values: ContextVar[dict[str, Any] | None] = ContextVar("smsroute_config_file_values", default=None)


class ConfigError(Exception):
    """Configuration that cannot be used; the message names the setting and the reason."""


def _not_empty(value: SecretStr) -> SecretStr:
    if not value.get_secret_value():
        raise ValueError("must not be empty: an empty secret would authenticate anyone")
    return value


Secret = Annotated[SecretStr, AfterValidator(_not_empty)]
"""A token, password or signing secret: at least one character, never logged."""


class IngressConfig(BaseModel):
    """Settings every ingress has; provider adapters extend it with their own (signature secrets...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(
        description="Provider type this ingress receives (`smsroute providers list`: agiletelecom, aws, bandwidth, "
        "bird, generic, infobip, kaleyra, plivo, sinch, smsgateway24, telnyx, twilio, vonage)."
    )
    token: Secret | None = Field(
        None,
        description="Shared token every request must carry, in token_header or the token_param query parameter "
        "(removed before logging); a missing or wrong one gets 401. Unset: no token check.",
    )
    token_header: str = Field("X-Smsroute-Token", description="Request header that carries the shared token.")
    token_param: str = Field(
        "token", description="Query parameter that carries the shared token, when the header is absent."
    )
    allow_ips: tuple[IPvAnyNetwork, ...] = Field(
        (), description="Client networks allowed (CIDR); any other client gets 403. Empty: every client."
    )
    trusted_proxies: tuple[IPvAnyNetwork, ...] = Field(
        (), description="Proxies whose X-Forwarded-For is believed when resolving the client address."
    )


def number_or_prefix(value: str) -> str:
    """A phone number or number prefix written by a person (``+39 800``): digits with an optional ``+``."""
    compact = re.sub(r"[\s().-]", "", value)
    if not re.fullmatch(r"\+?[0-9]{1,15}", compact):
        raise ValueError(f"{value!r} is not a phone number or prefix (digits with an optional leading '+')")
    return compact


class OutboundConfig(BaseModel):
    """Settings every outbound SMS provider has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float = Field(10.0, gt=0, le=120, description="Seconds one send request may take.")


class SmsReplyConfig(BaseModel):
    """The ``sms_reply`` action: which outbound provider sends replies, and the guards users expect.

    Each outbound provider's settings are a table of their own, ``[sms_reply.<provider>]``, shaped
    by the provider's module (:mod:`smsroute.sinks.outbound`), which checks them at start-up."""

    model_config = ConfigDict(extra="allow", frozen=True)

    provider: str | None = Field(
        None,
        description="Outbound provider for replies (openvoip, smsgateway24). Unset: sms_reply deliveries are dead letters.",
    )
    rate_limit: int = Field(3, ge=1, le=1000, description="Replies to one number within rate_window, at most.")
    rate_window: float = Field(
        3600.0, gt=0, le=31 * 86400, description="Seconds of the rate_limit window (rolling, kept across restarts)."
    )
    never_reply_to: tuple[str, ...] = Field(
        (), description="Numbers or prefixes (E.164) never auto-replied: other auto-responders, our own numbers."
    )

    @field_validator("never_reply_to")
    @classmethod
    def _numbers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(number_or_prefix(number) for number in value)

    @property
    def tables(self) -> dict[str, Any]:
        """The providers' tables as given (``[sms_reply.openvoip]``...), checked by their modules."""
        return dict(self.model_extra or {})


def email_address(value: str) -> str:
    """A bare address (``ops@example.com``); rule files and settings share this check."""
    if not EMAIL_ADDRESS.fullmatch(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


EmailAddress = Annotated[str, AfterValidator(email_address)]


class SMTPConfig(BaseModel):
    """The mail server that ``email`` actions send through."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, description="Name or address of the SMTP server.")
    port: int | None = Field(None, ge=1, le=65535, description="Default: 465 for tls, 587 for starttls, 25 for none.")
    tls: Literal["none", "starttls", "tls"] = Field(
        "starttls", description="starttls: upgrade a plain connection (required); tls: TLS from the first byte."
    )
    username: str | None = Field(
        None, description="Login name, with password; only over starttls or tls. Unset: no login."
    )
    password: Secret | None = Field(None, description="Login password, with username; never logged.")
    from_address: EmailAddress = Field(description="The From address of every email.")
    timeout: float = Field(30.0, gt=0, le=600, description="Seconds each SMTP command may take.")
    pool_size: int = Field(4, ge=1, le=64, description="Connections kept open and reused, at most.")
    ca_file: FilePath | None = Field(
        None, description="CA certificates (PEM) to verify the server with, not the system's."
    )

    @model_validator(mode="after")
    def _credentials(self) -> SMTPConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        if self.username is not None and self.tls == "none":
            raise ValueError(
                "username/password need tls = starttls or tls: the password would cross the network in clear"
            )
        return self

    @property
    def server_port(self) -> int:
        return self.port or {"tls": 465, "starttls": 587, "none": 25}[self.tls]


class InboundEmailConfig(BaseModel):
    """The SMTP receiver for providers that deliver inbound SMS by email (Agile Telecom does)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Run the SMTP receiver beside the HTTP ingress (smsroute serve).")
    host: str = Field("127.0.0.1", description="Address to listen on: keep it where only your mail server reaches it.")
    port: int = Field(2525, ge=0, le=65535, description="Port to listen on; 0 picks a free one.")
    source: str = Field("agiletelecom-email", pattern=INGRESS_NAME, description="Ingress name of these messages.")
    provider: str = Field("agiletelecom", description="Whose email layout the bodies follow.")
    allow_senders: tuple[EmailAddress, ...] = Field(
        ("smsin@agiletelecom.com",), min_length=1, description="From addresses accepted; any other gets 550."
    )
    max_message_bytes: int = Field(256 * 1024, ge=1024, description="Larger emails get 552.")


DAY = 86400.0


class RetentionConfig(BaseModel):
    """How long the embedded engine keeps what it is done with; the Kafka engine's topics get the same
    windows (``retention.ms``) when they are created. Pruned in the background in small batches,
    the space given back to the file system. Dedupe keys, pending parts and the reply rate-limit
    state are never pruned by it: they keep their own windows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    raw_events: float = Field(
        3 * DAY, gt=0, description="Seconds raw events are kept once processed (the trace's 'as received')."
    )
    messages: float = Field(
        7 * DAY,
        gt=0,
        description="Seconds messages are kept for search, trace and replay, and finished deliveries with "
        "their attempts (delivered, suppressed, or dead and dead-lettered).",
    )
    dead_letters: float = Field(30 * DAY, gt=0, description="Seconds dead letters are kept, replayed or not.")
    replies: float = Field(
        30 * DAY,
        gt=0,
        description="Seconds SMS replies and delivery reports are kept (at least sms_reply.rate_window).",
    )
    batch: int = Field(
        500,
        ge=10,
        le=100_000,
        description="Rows deleted per transaction: small, so the log and processing never wait long.",
    )
    interval: float = Field(60.0, gt=0, le=86400, description="Seconds between two pruning passes.")


class KafkaConfig(BaseModel):
    """The Kafka engine: where the brokers are, the topics' shape, and how the ingress publishes.

    Delivery guarantees are not settings: the producer always waits for every in-sync replica
    (``acks=all``) and is idempotent, so a provider is answered only once its event is replicated.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_servers: str = Field(
        description="Comma-separated host:port of one or more brokers (a TOML list is accepted too)."
    )
    client_id: str = Field("smsroute", min_length=1, description="Client id the brokers see (quotas, logs).")
    topic_prefix: str = Field("smsroute", description="Topics are <prefix>.raw.v1 and the like.")
    partitions: int = Field(12, ge=1, le=10_000, description="Partitions of each topic created at start-up.")
    replication_factor: int = Field(1, ge=1, le=32, description="Replicas of each topic created (3 in production).")
    compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = Field(
        "lz4", description="Producer batch compression: lz4 is cheap on CPU and shrinks JSON and form bodies well."
    )
    linger: float = Field(
        0.005, ge=0, le=1, description="Seconds a batch waits for more records: more records per request under load."
    )
    max_batch_bytes: int = Field(256 * 1024, ge=1024, le=1024 * 1024, description="Largest batch per partition.")
    request_timeout: float = Field(
        4.0, gt=0, description="Seconds before an unacknowledged publish fails (503); shorter than log_timeout."
    )

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _servers(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            value = ",".join(str(item) for item in value)
        if not isinstance(value, str):
            return value
        servers = [server.strip() for server in value.split(",") if server.strip()]
        if not servers:
            raise ValueError("no broker given (host:port, comma-separated)")
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return ",".join(servers)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.match(TOPIC_PREFIX, value):
            raise ValueError(f"{value!r} must match {TOPIC_PREFIX} (characters Kafka allows in topic names)")
        return value

    def topic(self, name: str) -> str:
        """The full topic name, e.g. ``topic("raw.v1")`` -> ``smsroute.raw.v1``."""
        return f"{self.topic_prefix}.{name}"

    @property
    def raw_topic(self) -> str:
        """Raw provider events, written by the ingress, keyed so a message's parts share a partition."""
        return self.topic("raw.v1")


class WorkerConfig(BaseModel):
    """The Kafka engine's workers (``smsroute worker``): their state, timers and metrics endpoint.
    Where the brokers and topics are is the ``kafka`` section's business."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_id: str | None = Field(
        None, description="Consumer group and internal topic prefix; default <topic_prefix>.worker."
    )
    store: Literal["rocksdb", "memory"] = Field(
        "rocksdb", description="Where tables live locally: RocksDB files under state_dir, or memory (tests)."
    )
    state_dir: Path | None = Field(None, description="Where the RocksDB tables live. Unset: <data_dir>/worker.")
    metrics_host: str = Field(
        "127.0.0.1",
        description="Address of the worker's /metrics, /healthz and /readyz (0.0.0.0 in the compose stack).",
    )
    metrics_port: int = Field(9108, ge=0, le=65535, description="GET /metrics on this port; 0 picks a free one.")
    tick_interval: float = Field(
        0.5, gt=0, le=60, description="Seconds between looks for stitch timeouts, due retries and batches to write."
    )
    batch_size: int = Field(
        500, ge=1, description="Raw events of a partition written to its state table as one record (at most)."
    )
    batch_interval: float = Field(
        0.5,
        gt=0,
        le=60,
        description="Seconds a partition's changes may wait before they are written: what a crash makes the next "
        "owner process again. Deliveries never wait for it.",
    )
    commit_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between offset commits (of events whose state is written)."
    )
    session_timeout: float = Field(
        10.0, ge=6, le=300, description="Seconds without heartbeats before a worker's partitions move to the others."
    )
    max_queued: int = Field(
        10_000, ge=1, description="Deliveries a worker holds waiting for a free slot at their destination."
    )


class Settings(BaseSettings):
    """Settings at the top of the file, before any table. Each section of settings below is a table."""

    model_config = SettingsConfigDict(env_prefix="SMSROUTE_", env_nested_delimiter="__", extra="forbid")

    host: str = Field("127.0.0.1", description="Address the HTTP ingress listens on; 0.0.0.0 for every interface.")
    port: int = Field(8080, ge=0, le=65535, description="Port the HTTP ingress listens on; 0 picks a free one.")
    data_dir: Path = Field(
        Path("data"),
        description="Where the embedded engine keeps its log (log.db) and state (state.db), and workers "
        "their tables (worker/); created when missing.",
    )
    routes: Path = Field(
        Path("routing_rules"),
        description="Routing rules: a YAML file, or a directory whose *.yaml and *.yml files load in name order.",
    )
    max_body_bytes: int = Field(64 * 1024, gt=0, description="Larger request bodies get 413.")
    log_timeout: float = Field(5.0, gt=0, description="Seconds to wait for a durable write before answering 503.")
    body_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds a client may take to send its request body; slower ones get 408."
    )
    log_busy_timeout: float = Field(2.0, gt=0, description="Seconds the log waits for a locked database.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe level of the JSON log lines written to stderr."
    )
    default_region: str | None = Field(
        None, description="ISO country whose national number formats are understood (e.g. IT). Unset: only +E.164."
    )
    dedupe_window: float = Field(48 * 3600.0, gt=0, description="Seconds a provider retry is recognised as one.")
    stitch_timeout: float = Field(
        300.0, gt=0, description="Seconds to wait for missing parts before delivering incomplete."
    )
    per_destination: int = Field(32, ge=1, le=1024, description="Delivery attempts in flight per receiver.")
    smtp: SMTPConfig | None = Field(
        None, description="The mail server email actions send through. Unset: email deliveries are dead letters."
    )
    inbound_email: InboundEmailConfig = Field(
        InboundEmailConfig(), description="The SMTP receiver for inbound SMS that a provider delivers by email."
    )
    pipeline_process: bool = Field(
        True, description="Run processors and sinks in a child process beside the ingress: a CPU core each."
    )
    worker: WorkerConfig = Field(
        default_factory=WorkerConfig,
        description="The Kafka engine's workers (smsroute worker): local state, timers, the metrics endpoint.",
    )
    ingress: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="One table per ingress: NAME is its ingress name (POST /inbound/NAME, the messages' source), "
        "bound to a provider type. Once one is given, only the configured ingresses are mounted; with none, "
        "every built-in provider is mounted under its own name, without authentication.",
    )
    sms_reply: SmsReplyConfig = Field(
        SmsReplyConfig(), description="The sms_reply action: its outbound provider and the guards on replies."
    )
    kafka: KafkaConfig | None = Field(
        None,
        description="The Kafka engine: brokers, topics, publishing. Given, the ingress publishes raw events to "
        "Kafka (smsroute serve too). Unset: the embedded engine.",
    )
    smpp: dict[str, SmppConfig] = Field(
        default_factory=dict, description="SMPP bind name -> an ESME bind to an SMSC; the name is its ingress name."
    )
    retention: RetentionConfig = Field(
        RetentionConfig(), description="How long raw events, messages, deliveries, dead letters and replies are kept."
    )
    operator_token: Secret | None = Field(
        None,
        description="Bearer token of the operators' /api/ and /console (same port as the ingress); never logged. "
        "Unset: they are served only when host is a loopback address, without a token.",
    )

    @field_validator("ingress")
    @classmethod
    def _names(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name in value:
            if not re.match(INGRESS_NAME, name):
                raise ValueError(f"ingress name {name!r} must match {INGRESS_NAME}")
        return value

    @field_validator("smpp")
    @classmethod
    def _bind_names(cls, value: dict[str, SmppConfig]) -> dict[str, SmppConfig]:
        for name in value:
            if not re.match(INGRESS_NAME, name):
                raise ValueError(f"SMPP bind name {name!r} must match {INGRESS_NAME}")
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (ISO 3166 alpha-2, e.g. IT)")
        return value.upper()

    @model_validator(mode="after")
    def _log_waits(self) -> Settings:
        if self.log_busy_timeout >= self.log_timeout:
            # Otherwise a request gives up (503) while its write still waits for the lock, and
            # /readyz keeps saying ready because no commit has failed yet.
            raise ValueError("log_busy_timeout must be shorter than log_timeout")
        if self.kafka is not None and self.kafka.request_timeout >= self.log_timeout:
            # Same reason: the publish must fail (and flip /readyz) before the request gives up.
            raise ValueError("kafka.request_timeout must be shorter than log_timeout")
        if self.retention.replies < self.sms_reply.rate_window:
            raise ValueError("retention.replies must be at least sms_reply.rate_window (the replies are its count)")
        if clash := sorted(self.smpp.keys() & self.ingress.keys()):
            raise ValueError(
                f"{', '.join(clash)}: the same name for an [ingress.*] and an [smpp.*]: messages' source would be ambiguous"
            )
        if self.kafka is not None and self.max_body_bytes > KAFKA_MAX_BODY:
            # A larger record is refused by brokers (message.max.bytes, 1 MiB by default) on
            # every retry: a 503 forever instead of a 413 once.
            raise ValueError(
                f"max_body_bytes must be at most {KAFKA_MAX_BODY} with kafka (records over 1 MiB are refused)"
            )
        return self

    def require_kafka(self, command: str) -> KafkaConfig:
        """The ``[kafka]`` section, which ``command`` cannot do without (a clear error otherwise)."""
        if self.kafka is None:
            raise ConfigError(
                f"kafka: not configured: {command} needs a [kafka] section with at least bootstrap_servers "
                "(in the configuration file, or SMSROUTE_KAFKA__BOOTSTRAP_SERVERS)"
            )
        return self.kafka

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=_file_values.get() or {})


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the file, the environment and ``overrides`` (None values are ignored)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{config_file}: cannot read: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: not valid TOML: {exc}") from exc
    token = _file_values.set(values)
    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as exc:
        raise ConfigError(describe(exc, source=str(config_file or "configuration"))) from exc
    finally:
        _file_values.reset(token)


def describe(exc: ValidationError, source: str, prefix: str = "") -> str:
    """One line per problem: ``<source>: <dotted.setting>: <reason>``."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        lines.append(f"{source}: {where or '(top level)'}: {error['msg']}")
    return "\n".join(lines)
