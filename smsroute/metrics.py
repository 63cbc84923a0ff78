"""Prometheus metrics: every metric the engine exports is declared here, labels kept bounded."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

disable_created_metrics()  # type: ignore[no-untyped-call]  # ``*_created`` series carry no signal here, and could not be added across processes

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

PROCESSOR_BATCH_SECONDS = Histogram(
    "smsroute_processor_batch_duration_seconds",
    "One processor batch: the pipeline over a batch of logged events and its state transaction.",
    buckets=LATENCY_BUCKETS,
)
PROCESSOR_BACKLOG = Gauge(
    "smsroute_processor_backlog_events",
    "Raw events in the embedded log not processed yet (the embedded engine's consumer lag).",
)
PIPELINE_EVENTS = Counter(
    "smsroute_pipeline_events_total",
    "Raw events through the processors, by outcome (normalized, duplicate, dead_letter, report).",
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
PARTS_DUPLICATE = Counter(
    "smsroute_parts_duplicate_total",
    "Parts dropped because their message already holds a part with that index, by provider.",
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
    "Delivery attempts by sink kind and outcome (delivered, retry, dead_letter, suppressed).",
    ["sink", "outcome"],
)
DELIVERY_RETRIES = Counter(
    "smsroute_delivery_retries_total",
    "Retries scheduled after a failed attempt, by sink kind and bounded reason (http_4xx, http_5xx, timeout, ...).",
    ["sink", "reason"],
)
DELIVERY_BACKLOG = Gauge(
    "smsroute_delivery_backlog",
    "Deliveries not finished, by sink kind and state (due: to send now; scheduled: waiting for a retry;"
    " sending: attempt in flight).",
    ["sink", "state"],
)
DELIVERY_BACKLOG_AGE = Gauge(
    "smsroute_delivery_backlog_age_seconds",
    "How long the oldest due delivery has waited past its due time, by sink kind (0: nothing waits).",
    ["sink"],
)
DEAD_LETTERS_WAITING = Gauge(
    "smsroute_dead_letters_waiting",
    "Dead letters not replayed yet, by stage (normalize, route, deliver).",
    ["stage"],
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
SMS_REPLIES = Counter(
    "smsroute_sms_replies_total",
    "SMS auto-replies by outbound provider and outcome: sent (the provider took it), delivered and failed"
    " (delivery reports, or the provider refusing it for good), suppressed (a guard stopped it).",
    ["provider", "outcome"],
)
REPLIES_SUPPRESSED = Counter(
    "smsroute_sms_replies_suppressed_total",
    "SMS auto-replies a guard stopped, by reason (opted_out, loop, already_replied, rate_limited).",
    ["reason"],
)
OPT_OUTS = Counter(
    "smsroute_opt_outs_total",
    "Changes to the opt-out list from compliance routes (stop: opted out, start: opted back in).",
    ["change"],
)
DELIVERY_REPORTS = Counter(
    "smsroute_delivery_reports_total",
    "Delivery reports processed, by provider, mapped status (pending, sent, delivered, failed, unknown)"
    " and whether they were linked to one of our replies (true, false).",
    ["provider", "status", "linked"],
)

CONSUMER_LAG = Gauge(
    "smsroute_consumer_lag",
    "Kafka engine: records of a partition a worker serves that are not yet processed and committed.",
    ["topic", "partition"],
)


SMPP_BINDS = Counter(
    "smsroute_smpp_binds_total",
    "SMPP bind attempts by bind name and outcome (bound, refused: the SMSC said no, error: no connection or no answer).",
    ["bind", "outcome"],
)
SMPP_PDUS = Counter(
    "smsroute_smpp_pdus_total",
    "PDUs received from SMSCs by bind, command and status: the status carried (responses) or answered (requests).",
    ["bind", "command", "status"],
)
SMPP_BIND_UP = Gauge(
    "smsroute_smpp_bind_up",
    "1 while the SMPP bind is bound to its SMSC, 0 while it is not (connecting, refused, backing off).",
    ["bind"],
)


class _Families:
    """A registry-like view of already collected families, for :func:`generate_latest`."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def exposition(others: Iterable[str] = ()) -> bytes:
    """This process's metrics with those of the engine's other processes (their text exposition) added in.

    Adding is right for counters and histograms, and for gauges too, since each gauge is set by one
    process only: the processing process reports no process-wide collectors."""
    families = {family.name: family for family in REGISTRY.collect()}
    for text in others:
        for family in text_string_to_metric_families(text):
            mine = families.setdefault(family.name, family)
            if mine is family:
                continue
            index = {(sample.name, tuple(sorted(sample.labels.items()))): i for i, sample in enumerate(mine.samples)}
            for sample in family.samples:
                i = index.get((sample.name, tuple(sorted(sample.labels.items()))))
                if i is None:
                    mine.samples.append(sample)
                else:
                    mine.samples[i] = mine.samples[i]._replace(value=mine.samples[i].value + sample.value)
    return generate_latest(_Families(families.values()))


RETENTION_PRUNED = Counter(
    "smsroute_retention_pruned_total",
    "Rows deleted by retention, by table (raw_events, messages, events, deliveries, attempts, dead_letters, "
    "replies, delivery_reports).",
    ["table"],
)
DATA_BYTES = Gauge(
    "smsroute_data_bytes",
    "Bytes the embedded engine keeps on disk, by file (log, state; their WAL included).",
    ["file"],
)
DATA_FREE_BYTES = Gauge(
    "smsroute_data_free_bytes",
    "Bytes free for the embedded engine on the file system of its data directory.",
)
