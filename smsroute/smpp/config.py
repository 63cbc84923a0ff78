"""Settings of one SMPP bind: ``[smpp.NAME]`` in the configuration file, ``SMSROUTE_SMPP__NAME__*``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr, field_validator, model_validator

Alphabet = Literal["gsm", "latin1", "ascii"]


class SmppConfig(BaseModel):
    """An ESME bind to an operator's SMSC; the bind's name is the ingress name of its messages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, description="The SMSC's host name or address.")
    port: int = Field(2775, ge=1, le=65535, description="The SMSC's port (2775 by convention, 3550 often for TLS).")
    system_id: str = Field(min_length=1, max_length=15, description="The ESME's account at the SMSC.")
    password: SecretStr = Field(description="At most 8 characters (SMPP 3.4); never logged.")
    system_type: str = Field("", max_length=12, description="As the operator asks; usually empty.")
    bind: Literal["receiver", "transceiver"] = Field(
        "receiver", description="receiver takes MO messages and receipts only; transceiver if the SMSC wants one bind."
    )
    addr_ton: int = Field(0, ge=0, le=255, description="Type of number of address_range, as the operator asks.")
    addr_npi: int = Field(0, ge=0, le=255, description="Numbering plan of address_range, as the operator asks.")
    address_range: str = Field("", max_length=40, description="Addresses this bind serves, as the operator asks.")
    tls: bool = Field(False, description="TLS from the first byte; the SMSC's certificate is verified.")
    ca_file: FilePath | None = Field(
        None, description="CA certificates (PEM) to verify the SMSC with, not the system's."
    )
    tls_server_name: str | None = Field(None, description="Name to verify the certificate against; default: host.")
    connect_timeout: float = Field(10.0, gt=0, le=300, description="Seconds to connect and bind.")
    enquire_link_interval: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds of silence before an enquire_link; no answer in response_timeout drops the bind.",
    )
    response_timeout: float = Field(10.0, gt=0, le=300, description="Seconds the SMSC has to answer a request.")
    reconnect_initial: float = Field(
        1.0, gt=0, le=600, description="First wait before binding again after a failure..."
    )
    reconnect_max: float = Field(60.0, gt=0, le=3600, description="...doubling up to this, with +-20 % jitter.")
    window: int = Field(
        64, ge=1, le=1024, description="deliver_sm being made durable at once; past it the bind stops reading."
    )
    busy_status: Literal["ESME_RX_T_APPN", "ESME_RMSGQFUL", "ESME_RTHROTTLED"] = Field(
        "ESME_RX_T_APPN",
        description="The temporary error answered when the log cannot be written: the SMSC redelivers.",
    )
    throttle: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Seconds the bind stops reading after a failed write, doubling while writes fail...",
    )
    throttle_max: float = Field(30.0, gt=0, le=600, description="...up to this.")
    default_alphabet: Alphabet = Field(
        "gsm",
        description="What data_coding 0 (the SMSC default alphabet) means: gsm (unpacked GSM 03.38), latin1, ascii.",
    )

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if not secret:
            raise ValueError("must not be empty")
        if len(secret.encode()) > 8:
            raise ValueError("SMPP 3.4 passwords are at most 8 characters")
        return value

    @field_validator("system_id", "system_type", "address_range")
    @classmethod
    def _ascii(cls, value: str) -> str:
        if not value.isascii():
            raise ValueError("must be ASCII (a C-octet string on the wire)")
        return value

    @model_validator(mode="after")
    def _waits(self) -> SmppConfig:
        if self.reconnect_initial > self.reconnect_max:
            raise ValueError("reconnect_initial must not exceed reconnect_max")
        if self.throttle > self.throttle_max:
            raise ValueError("throttle must not exceed throttle_max")
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file is given but tls is off")
        return self
