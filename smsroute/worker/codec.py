"""Faust codecs for the Avro records of the Kafka engine (``smsroute.records``).

Registered under ``smsroute.<schema name>``: a topic declared with ``value_serializer=
"smsroute.delivery"`` takes and gives :class:`~smsroute.sinks.delivery.Delivery` objects, encoded
with fastavro and the schema-revision byte, exactly as the rest of the engine writes them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faust.serializers import codecs

from ..records import AttemptRecord, DeadLetterRecord, decode_delivery, decode_report, encode_delivery, encode_report


class AvroCodec(codecs.Codec):
    """One record family: ``encode`` turns the object into bytes, ``decode`` back."""

    def __init__(self, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any], **kwargs: Any) -> None:
        super().__init__(encode=encode, decode=decode, **kwargs)

    def _dumps(self, obj: Any) -> bytes:
        return self.kwargs["encode"](obj)

    def _loads(self, data: bytes) -> Any:
        return self.kwargs["decode"](data)


CODECS = {
    "smsroute.delivery": AvroCodec(encode_delivery, decode_delivery),
    "smsroute.attempt": AvroCodec(AttemptRecord.encode, AttemptRecord.decode),
    "smsroute.dead_letter": AvroCodec(DeadLetterRecord.encode, DeadLetterRecord.decode),
    "smsroute.delivery_report": AvroCodec(encode_report, decode_report),
}


def register() -> None:
    """Make the codecs known to Faust by name (idempotent)."""
    for name, codec in CODECS.items():
        codecs.register(name, codec)
