"""Kafka topics made at start-up: created when missing, never changed when present."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from ...config import KafkaConfig

log = logging.getLogger(__name__)


async def ensure_topics(config: KafkaConfig, names: Sequence[str], compacted: Sequence[str] = ()) -> None:
    """Create the missing topics with the configured partitions and replicas, or raise the
    broker's error (a replication factor the cluster cannot meet, a policy, no broker).
    ``compacted`` topics (state changelogs) keep the latest record of each key.

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
            [NewTopic(name, config.partitions, config.replication_factor) for name in names]
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
