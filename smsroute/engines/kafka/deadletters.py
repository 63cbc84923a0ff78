"""Dead letters of the Kafka engine: read from their topic, replayed through the workers' control topic.

The topic is compacted and keyed by dead-letter id: the latest record of an id is its state. A
letter is in the partition of the raw partition it came from. A replay sends the dead delivery
again, with its round raised (a fresh set of retries), to that partition of the control topic,
where the worker serving it takes the new round into the partition's state and dispatches it; and
appends the letter again with ``replayed_at``. Replaying twice is harmless: a worker ignores a
round it has already taken."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from ...config import KafkaConfig, Settings
from ...models.attempt import AttemptRecord
from ...models.dead_letter import DeadLetterRecord
from ...models.delivery import Delivery
from .worker import topic_names


async def latest(settings: Settings) -> list[DeadLetterRecord]:
    """Every dead letter's latest record, in the order the letters first appeared."""
    return [letter for letter, _ in await _latest(settings)]


async def _latest(settings: Settings) -> list[tuple[DeadLetterRecord, int]]:
    """Every dead letter's latest record and its partition."""
    assert settings.kafka is not None
    letters: dict[str, tuple[DeadLetterRecord, int]] = {}
    for record in await read_all(settings.kafka, topic_names(settings)["dead_letters"]):
        if record.value is None:
            continue
        letter = DeadLetterRecord.decode(record.value)
        letters[letter.id] = (letter, record.partition)
    return sorted(letters.values(), key=lambda found: found[0].created_at)


async def read_all(kafka: KafkaConfig, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of ``topic`` as it stands now, partition by partition."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=kafka.client_id,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()  # with no group, every partition of the topic is assigned
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        partitions = sorted(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            for batch in (await consumer.getmany(*remaining, timeout_ms=500)).values():
                records.extend(batch)
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return records


def describe(letter: DeadLetterRecord) -> dict[str, Any]:
    """A letter as ``dead-letters list`` shows it (the embedded engine's fields)."""
    return {
        "id": letter.id,
        "stage": letter.stage,
        "reason": letter.reason,
        "delivery_id": letter.delivery_id,
        "created_at": letter.created_at,
        "replayed_at": letter.replayed_at,
        "attempts": [_attempt(AttemptRecord.decode(data)) for data in letter.attempts],
    }


def _attempt(record: AttemptRecord) -> dict[str, Any]:
    return {
        "attempt": record.attempt,
        "at": record.at,
        "outcome": record.outcome,
        "status": record.status,
        "error": record.error,
        "duration": record.duration,
    }


async def replay(settings: Settings, ids: list[str] | None) -> int:
    """Send the dead deliveries (all, or those of ``ids``) again; returns how many."""
    kafka = settings.kafka
    assert kafka is not None
    names = topic_names(settings)
    chosen = [
        (letter, partition)
        for letter, partition in await _latest(settings)
        if letter.stage == "deliver"
        and letter.replayed_at is None
        and letter.delivery is not None
        and (ids is None or letter.id in ids)
    ]
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, client_id=kafka.client_id, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        now = time.time()
        for letter, partition in chosen:
            assert letter.delivery is not None
            delivery = Delivery.decode(letter.delivery)
            again = dataclasses.replace(delivery, round=delivery.round + 1)
            await producer.send_and_wait(names["control"], again.encode(), key=again.id.encode(), partition=partition)
            marked = dataclasses.replace(letter, replayed_at=now)
            await producer.send_and_wait(
                names["dead_letters"], marked.encode(), key=letter.id.encode(), partition=partition
            )
    finally:
        await producer.stop()
    return len(chosen)
