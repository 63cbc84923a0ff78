"""The test broker itself: a real Apache Kafka with the settings the engine relies on."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from kafka_broker import LocalBroker, read_topic


async def create_topic(bootstrap: str, partitions: int = 1) -> str:
    topic = f"test-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    return topic


async def topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


async def test_topics_are_never_created_by_accident(kafka_bootstrap: str) -> None:
    topic = f"never-created-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=3000)
    await producer.start()
    try:
        with pytest.raises(KafkaError):
            await producer.send_and_wait(topic, b"x")
    finally:
        await producer.stop()
    assert topic not in await topics(kafka_bootstrap)


async def test_restart_keeps_data_and_ports(local_kafka: LocalBroker) -> None:
    topic = await create_topic(local_kafka.bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=local_kafka.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"before restart")
    finally:
        await producer.stop()
    bootstrap = local_kafka.bootstrap
    await local_kafka.stop_async()
    assert not local_kafka.running
    await local_kafka.start_async()
    assert local_kafka.bootstrap == bootstrap
    assert [record.value for record in await read_topic(bootstrap, topic)] == [b"before restart"]


async def test_a_throwaway_broker_is_a_cluster_of_its_own(kafka_bootstrap: str, throwaway_kafka: LocalBroker) -> None:
    assert throwaway_kafka.bootstrap != kafka_bootstrap
    topic = await create_topic(throwaway_kafka.bootstrap)
    assert topic in await topics(throwaway_kafka.bootstrap)
    assert topic not in await topics(kafka_bootstrap)
