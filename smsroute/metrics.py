"""Prometheus metrics: every metric the engine exports is declared here, labels kept bounded."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

INGRESS_REQUESTS = Counter(
    "smsroute_ingress_requests_total",
    "Provider requests by ingress source and outcome (accepted, or the rejection reason).",
    ["source", "outcome"],
)
INGRESS_EVENTS = Counter(
    "smsroute_ingress_events_total",
    "Raw events written to the log, by ingress source and kind (inbound, status).",
    ["source", "kind"],
)
INGRESS_LATENCY = Histogram(
    "smsroute_ingress_request_duration_seconds",
    "Time from request arrival to the provider's answer, including the durable log write.",
    ["source"],
    buckets=LATENCY_BUCKETS,
)
LOG_COMMITS = Counter(
    "smsroute_log_commits_total",
    "Group commits of the embedded log, by outcome (ok, error).",
    ["outcome"],
)
LOG_COMMIT_SECONDS = Histogram(
    "smsroute_log_commit_duration_seconds",
    "Duration of one group commit of the embedded log (write and fsync).",
    buckets=LATENCY_BUCKETS,
)
LOG_COMMIT_REQUESTS = Histogram(
    "smsroute_log_commit_requests",
    "Requests made durable by one group commit.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
KAFKA_RECORDS = Counter(
    "smsroute_kafka_records_total",
    "Raw event records the ingress published to Kafka, by outcome (acknowledged, failed).",
    ["outcome"],
)
KAFKA_PUBLISH_SECONDS = Histogram(
    "smsroute_kafka_publish_duration_seconds",
    "From handing one request's records to the producer to the acknowledgement of all of them (acks=all).",
    buckets=LATENCY_BUCKETS,
)
KAFKA_READY = Gauge(
    "smsroute_kafka_producer_ready",
    "1 while the ingress has a Kafka producer and its last publish succeeded, else 0.",
)

PIPELINE_EVENTS = Counter(
    "smsroute_pipeline_events_total",
    "Raw events through the processors, by outcome (normalized, duplicate, dead_letter, status_pending).",
    ["provider", "outcome"],
)
DEAD_LETTERS = Counter(
    "smsroute_dead_letters_total",
    "Dead letters, by stage (normalize, route, deliver) and bounded reason code.",
    ["stage", "reason"],
)
PARTS_STITCHED = Counter(
    "smsroute_parts_stitched_total",
    "Concatenated messages completed, by provider.",
    ["provider"],
)
STITCH_TIMEOUTS = Counter(
    "smsroute_stitch_timeouts_total",
    "Concatenated messages released incomplete after the stitch timeout (missing parts), by provider.",
    ["provider"],
)
MESSAGES_ROUTED = Counter(
    "smsroute_messages_routed_total",
    "Messages matched by a route, by route name (a message fanned out counts once per route).",
    ["route"],
)
MESSAGES_UNROUTED = Counter(
    "smsroute_messages_unrouted_total",
    "Messages no route matched (kept as dead letters for replay).",
)
DELIVERIES = Counter(
    "smsroute_deliveries_total",
    "Delivery attempts by sink kind and outcome (delivered, retry, dead_letter).",
    ["sink", "outcome"],
)
DELIVERY_ATTEMPT_SECONDS = Histogram(
    "smsroute_delivery_attempt_duration_seconds",
    "Duration of one delivery attempt, by sink kind.",
    ["sink"],
    buckets=LATENCY_BUCKETS,
)
END_TO_END_SECONDS = Histogram(
    "smsroute_end_to_end_seconds",
    "From receipt at the ingress to successful delivery, by sink kind.",
    ["sink"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
)
RULES_RELOADS = Counter(
    "smsroute_rules_reloads_total",
    "Loads of the routing rules, by outcome (success, failure: the rules in force stay in force).",
    ["outcome"],
)
RULES_INFO = Gauge(
    "smsroute_rules_info",
    "1 for the version (content hash) of the routing rules in force.",
    ["version"],
)
RULES_ROUTES = Gauge(
    "smsroute_rules_routes",
    "Routes in the routing rules in force.",
)
CONSUMER_LAG = Gauge(
    "smsroute_consumer_lag",
    "Kafka engine: records of a partition a worker serves that are not yet processed and committed.",
    ["topic", "partition"],
)
