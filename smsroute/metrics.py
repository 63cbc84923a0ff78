"""Prometheus metrics: every metric the engine exports is declared here, labels kept bounded."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
