"""Topics the Kafka engine creates, on a real broker: each with its retention window from
``[retention]``, state changelogs compacted."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from helpers import eventually
from smsroute.config import KafkaConfig, RetentionConfig
from smsroute.engines.kafka.log import KafkaLog
from smsroute.engines.kafka.topics import ensure_topics

pytestmark = pytest.mark.kafka


async def topic_configs(bootstrap: str, names: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    finally:
        await admin.close()
    return {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}
        for response in responses
        for resource in response.resources
    }


async def test_topics_are_created_with_the_retention_windows(kafka_bootstrap: str) -> None:
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:8]}", partitions=1)
    retention = RetentionConfig(raw_events=3600, messages=7200, replies=43200)
    names = [kafka.raw_topic, kafka.topic("attempts.v1"), kafka.topic("delivery_reports.v1")]
    changelog = f"{kafka.topic_prefix}.worker-dedupe-changelog"
    await ensure_topics(kafka, names, compacted=[changelog], retention=retention)

    configs = await topic_configs(kafka_bootstrap, [*names, changelog])
    assert {name: configs[name]["retention.ms"] for name in names} == {
        names[0]: "3600000",
        names[1]: "7200000",
        names[2]: "43200000",
    }
    assert {configs[name]["cleanup.policy"] for name in names} == {"delete"}
    assert configs[changelog]["cleanup.policy"] == "compact"


async def test_the_ingress_creates_the_raw_topic_with_its_retention_window(kafka_bootstrap: str) -> None:
    """Whichever process starts first creates the raw topic: the ingress honours ``[retention]`` too."""
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:8]}", partitions=1)
    log = KafkaLog(kafka, RetentionConfig(raw_events=1800))
    await log.start()
    try:
        await eventually(lambda: log.ready, 30)
    finally:
        await log.stop()
    configs = await topic_configs(kafka_bootstrap, [kafka.raw_topic])
    assert configs[kafka.raw_topic]["retention.ms"] == "1800000"
