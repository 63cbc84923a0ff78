"""Kafka topics made at start-up: created when missing, never changed when present."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from ...config import KafkaConfig, RetentionConfig

log = logging.getLogger(__name__)
DEFAULT_RETENTION = RetentionConfig()


async def ensure_topics(
    config: KafkaConfig,
    names: Sequence[str],
    compacted: Sequence[str] = (),
    retention: RetentionConfig = DEFAULT_RETENTION,
) -> None:
    """Create the missing topics with the configured partitions and replicas, or raise the
    broker's error (a replication factor the cluster cannot meet, a policy, no broker).
    ``compacted`` topics (state changelogs) keep the latest record of each key; the others are
    deleted past their ``retention`` window (:func:`retention_ms`).

    An existing topic with another partition count is only reported: adding partitions would
    move keys to other partitions, splitting the parts of messages in flight."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=config.bootstrap_servers,
        client_id=config.client_id,
        request_timeout_ms=int(config.request_timeout * 1000),
    )
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    name,
                    config.partitions,
                    config.replication_factor,
                    topic_configs={"cleanup.policy": "delete", "retention.ms": str(retention_ms(name, retention))},
                )
                for name in names
            ]
            + [
                NewTopic(
                    name, config.partitions, config.replication_factor, topic_configs={"cleanup.policy": "compact"}
                )
                for name in compacted
            ]
        )
        existing = []
        for name, code, message in response.topic_errors:
            if code == TopicAlreadyExistsError.errno:
                existing.append(name)
            elif code:
                raise for_code(code)(f"cannot create topic {name}: {message}")
            else:
                log.info(
                    f"topic {name} created",
                    extra={
                        "event": "topic_created",
                        "topic": name,
                        "partitions": config.partitions,
                        "replication_factor": config.replication_factor,
                    },
                )
        for topic in await admin.describe_topics(existing) if existing else ():
            # An error here is a topic too new to be described yet: someone else just made it.
            if not topic["error_code"] and len(topic["partitions"]) != config.partitions:
                log.warning(
                    f"topic {topic['topic']} has {len(topic['partitions'])} partitions, not the configured "
                    f"{config.partitions}; left as it is",
                    extra={
                        "event": "topic_partitions_differ",
                        "topic": topic["topic"],
                        "partitions": len(topic["partitions"]),
                        "configured": config.partitions,
                    },
                )
    finally:
        await admin.close()


def retention_ms(topic: str, retention: RetentionConfig) -> int:
    """A topic's ``retention.ms`` from the embedded engine's windows, by what it holds (its name's
    ``.<what>.v1`` part): raw events, delivery reports as replies, the rest (attempts, the workers'
    control topic) as messages. Dead letters are compacted: each stays until replayed."""
    if topic.endswith(".raw.v1"):
        seconds = retention.raw_events
    elif topic.endswith(".delivery_reports.v1"):
        seconds = retention.replies
    else:
        seconds = retention.messages
    return int(seconds * 1000)
