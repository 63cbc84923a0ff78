"""Configuration: TOML file, SMSROUTE_* environment, keyword overrides; every error names its setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from smsroute.config import ConfigError, load_settings
from smsroute.providers import available, build_receivers


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SMSROUTE_* variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("SMSROUTE_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "smsroute.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    settings = load_settings()
    assert (settings.host, settings.port, settings.data_dir, settings.ingress) == ("127.0.0.1", 8080, Path("data"), {})


def test_precedence_keyword_over_env_over_file_over_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path, 'host = "0.0.0.0"\nport = 9001\nlog_level = "debug"\n')
    assert load_settings(config).port == 9001
    monkeypatch.setenv("SMSROUTE_PORT", "9002")
    monkeypatch.setenv("SMSROUTE_LOG_LEVEL", "warning")
    from_env = load_settings(config)
    assert (from_env.port, from_env.log_level, from_env.host) == (9002, "warning", "0.0.0.0")
    assert from_env.max_body_bytes == 64 * 1024  # set nowhere: the default
    assert load_settings(config, port=9003).port == 9003
    assert load_settings(config, port=None).port == 9002  # an option not given overrides nothing


def test_nested_environment_variable_sets_an_ingress_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path, '[ingress.agiletelecom]\ntoken_header = "X-Agile-Key"\n')
    monkeypatch.setenv("SMSROUTE_INGRESS__AGILETELECOM__TOKEN", "s3cret")
    settings = load_settings(config)
    receiver = build_receivers(settings)["agiletelecom"]
    assert receiver.config.token is not None
    assert receiver.config.token.get_secret_value() == "s3cret"
    assert receiver.config.token_header == "X-Agile-Key"  # merged with the file's table, not replaced
    assert "s3cret" not in repr(receiver.config)


def test_configured_ingress_names_replace_the_defaults() -> None:
    settings = load_settings(ingress={"sms-it": {"provider": "agiletelecom"}, "smsgateway24": {}})
    receivers = build_receivers(settings)
    assert {name: receiver.provider for name, receiver in receivers.items()} == {
        "sms-it": "agiletelecom",
        "smsgateway24": "smsgateway24",
    }


def test_no_ingress_configured_mounts_every_provider_under_its_own_name() -> None:
    receivers = build_receivers(load_settings())
    http = {  # smpp: over binds; generic: only with its mapping
        name: name
        for name, provider in available().items()
        if provider.receiving.kinds and provider.receiving.default_mount
    }
    assert {name: receiver.provider for name, receiver in receivers.items()} == http
    assert {"agiletelecom", "smsgateway24"} <= set(receivers) and "smpp" not in receivers and "smpp" in available()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("port = 70000\n", "port: Input should be less than or equal to 65535"),
        ('port = "eighty"\n', "port: Input should be a valid integer"),
        ("max_body_bytes = 0\n", "max_body_bytes: Input should be greater than 0"),
        ('log_level = "loud"\n', "log_level: Input should be 'debug', 'info', 'warning' or 'error'"),
        ("prot = 8080\n", "prot: Extra inputs are not permitted"),
        ('[ingress."SMS IT"]\n', "ingress: Value error, ingress name 'SMS IT' must match"),
    ],
)
def test_invalid_file_values_name_the_file_and_the_setting(tmp_path: Path, text: str, expected: str) -> None:
    config = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert str(error.value).startswith(f"{config}: {expected}")


def test_invalid_environment_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSROUTE_PORT", "70000")
    with pytest.raises(ConfigError, match=r"^configuration: port: Input should be less than or equal to 65535$"):
        load_settings()


def test_invalid_keyword_value_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"^configuration: log_timeout: Input should be greater than 0$"):
        load_settings(log_timeout=0)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, "port = 70000\nprot = 1\n"))
    assert [line.split(": ")[1] for line in str(error.value).splitlines()] == ["port", "prot"]


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    config = write(tmp_path, "port = \n")
    with pytest.raises(ConfigError, match=rf"^{config}: not valid TOML: "):
        load_settings(config)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'absent.toml'}: cannot read: "):
        load_settings(tmp_path / "absent.toml")


def test_unknown_provider_lists_the_built_in_ones(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[ingress.sms-it]\nprovider = "agile"\n'))
    with pytest.raises(ConfigError) as error:
        build_receivers(settings)
    message = str(error.value)
    assert message.startswith("ingress.sms-it.provider: unknown provider 'agile' (built-in: ")
    assert all(provider in message for provider in available())


def test_ingress_named_after_no_provider_needs_a_provider() -> None:
    with pytest.raises(ConfigError, match=r"^ingress.sms-it.provider: unknown provider 'sms-it'"):
        build_receivers(load_settings(ingress={"sms-it": {"token": "s3cret"}}))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"tokn": "s3cret"}, "configuration: ingress.agiletelecom.tokn: Extra inputs are not permitted"),
        ({"allow_ips": ["10.0.0.300/8"]}, "configuration: ingress.agiletelecom.allow_ips.0: "),
        ({"token_header": 5}, "configuration: ingress.agiletelecom.token_header: Input should be a valid string"),
    ],
)
def test_bad_ingress_options_are_named_with_their_table(options: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        build_receivers(load_settings(ingress={"agiletelecom": options}))
    assert str(error.value).startswith(expected)
    assert "s3cret" not in str(error.value)


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SMSROUTE_")}
    return subprocess.run(
        [sys.executable, "-m", "smsroute", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_cli_exits_2_on_a_bad_config_file(tmp_path: Path) -> None:
    write(tmp_path, "port = 70000\n", name="bad.toml")
    result = run_cli(tmp_path, "serve", "--config", "bad.toml")
    assert result.returncode == 2
    assert (
        result.stderr == "smsroute: configuration error:\nbad.toml: port: Input should be less than or equal to 65535\n"
    )
    assert not (tmp_path / "data").exists()  # refused before touching anything


def test_cli_exits_2_on_an_unknown_provider(tmp_path: Path) -> None:
    (tmp_path / "routes").mkdir()
    write(tmp_path, 'routes = "routes"\n[ingress.sms-it]\nprovider = "agile"\n', name="smsroute.toml")
    result = run_cli(tmp_path, "serve", "--config", "smsroute.toml")
    assert result.returncode == 2
    assert "configuration error" in result.stderr
    assert "ingress.sms-it.provider: unknown provider 'agile'" in result.stderr


def test_log_busy_timeout_must_be_shorter_than_log_timeout() -> None:
    with pytest.raises(ConfigError, match="log_busy_timeout must be shorter than log_timeout"):
        load_settings(log_timeout=1.0, log_busy_timeout=1.0)


def test_smtp_settings_from_file_and_secret_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(
        tmp_path, '[smtp]\nhost = "mail.example.com"\nusername = "smsroute"\nfrom_address = "sms@example.com"\n'
    )
    monkeypatch.setenv("SMSROUTE_SMTP__PASSWORD", "pa55word")
    smtp = load_settings(config).smtp
    assert smtp is not None and (smtp.host, smtp.server_port, smtp.tls, smtp.pool_size) == (
        "mail.example.com",
        587,
        "starttls",
        4,
    )
    assert smtp.password is not None and smtp.password.get_secret_value() == "pa55word"
    assert "pa55word" not in repr(smtp)
    with pytest.raises(ConfigError, match="smtp.host: Field required"):  # a password alone is no mail server
        load_settings()
    monkeypatch.delenv("SMSROUTE_SMTP__PASSWORD")
    assert load_settings().smtp is None


def test_bad_smtp_and_inbound_email_settings_are_named(tmp_path: Path) -> None:
    config = write(tmp_path, '[smtp]\nhost = "m"\nfrom_address = "x"\n[inbound_email]\nallow_senders = []\nport = -1\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(caught.value).split("\n") == [
        f"{config}: smtp.from_address: Value error, 'x' is not an email address",
        f"{config}: inbound_email.port: Input should be greater than or equal to 0",
        f"{config}: inbound_email.allow_senders: Tuple should have at least 1 item after validation, not 0",
    ]


def test_cli_exits_2_on_inbound_email_from_a_provider_without_email(tmp_path: Path) -> None:
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "r.yaml").write_text(
        "routes: [{name: r, actions: [{webhook: {url: 'http://127.0.0.1:9/x'}}]}]\n"
    )
    write(tmp_path, 'routes = "routes"\n[inbound_email]\nenabled = true\nprovider = "vonage"\n')
    result = run_cli(tmp_path, "serve", "--config", "smsroute.toml", "--port", "0")
    assert result.returncode == 2
    assert (
        "inbound_email.provider: 'vonage' delivers no SMS by email (providers that do: agiletelecom)" in result.stderr
    )
    assert not (tmp_path / "data").exists()


def test_kafka_section_from_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().kafka is None  # the embedded engine unless Kafka is configured
    config = write(tmp_path, '[kafka]\nbootstrap_servers = ["k1:9092", "k2:9092"]\npartitions = 24\n')
    kafka = load_settings(config).kafka
    assert kafka is not None
    assert (kafka.bootstrap_servers, kafka.partitions, kafka.raw_topic) == ("k1:9092,k2:9092", 24, "smsroute.raw.v1")
    monkeypatch.setenv("SMSROUTE_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092, 127.0.0.2:19092")
    monkeypatch.setenv("SMSROUTE_KAFKA__TOPIC_PREFIX", "sms-eu")
    kafka = load_settings(config).kafka
    assert kafka is not None
    assert (kafka.bootstrap_servers, kafka.partitions) == ("127.0.0.1:19092,127.0.0.2:19092", 24)
    assert kafka.topic("messages.v1") == "sms-eu.messages.v1"


@pytest.mark.parametrize(
    ("kafka", "expected"),
    [
        ({}, "kafka.bootstrap_servers: Field required"),
        ({"bootstrap_servers": "localhost"}, "kafka.bootstrap_servers: Value error, 'localhost' is not host:port"),
        ({"bootstrap_servers": " , "}, "kafka.bootstrap_servers: Value error, no broker given"),
        (
            {"bootstrap_servers": "k:9092", "topic_prefix": "sms eu"},
            "kafka.topic_prefix: Value error, 'sms eu' must match",
        ),
        (
            {"bootstrap_servers": "k:9092", "partitions": 0},
            "kafka.partitions: Input should be greater than or equal to 1",
        ),
        ({"bootstrap_servers": "k:9092", "compression": "brotli"}, "kafka.compression: Input should be 'none', 'gzip'"),
        ({"bootstrap_servers": "k:9092", "acks": 1}, "kafka.acks: Extra inputs are not permitted"),
        (
            {"bootstrap_servers": "k:9092", "request_timeout": 5.0},
            "(top level): Value error, kafka.request_timeout must be shorter than log_timeout",
        ),
    ],
)
def test_bad_kafka_settings_are_named(kafka: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(kafka=kafka)
    assert str(error.value).startswith(f"configuration: {expected}")


def test_kafka_limits_the_body_size() -> None:
    load_settings(max_body_bytes=2 * 1024 * 1024)  # the embedded log takes it
    with pytest.raises(ConfigError) as error:
        load_settings(max_body_bytes=2 * 1024 * 1024, kafka={"bootstrap_servers": "k:9092"})
    assert "max_body_bytes must be at most 983040 with kafka" in str(error.value)


def test_ingress_command_needs_kafka(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "ingress")
    assert result.returncode == 2
    assert "kafka: not configured: `smsroute ingress` (it publishes to Kafka" in result.stderr


def test_retention_keeps_replies_at_least_as_long_as_the_rate_limit_counts_them() -> None:
    with pytest.raises(ConfigError, match="retention.replies must be at least sms_reply.rate_window"):
        load_settings(retention={"replies": 60}, sms_reply={"rate_window": 3600})
    assert load_settings(retention={"replies": 3600}).retention.replies == 3600
