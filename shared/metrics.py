"""Every Prometheus metric Pantau exports, named once.

Names follow Prometheus conventions: `pantau_` prefix, base units, `_total` for counters.
Labels are bounded: sources come from the config (anything else is `other`), reasons and
channels are closed lists; no per-event or per-person label exists.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# --- ingest --------------------------------------------------------------------------------
REPORTS_RECEIVED = Counter(
    "pantau_reports_received_total", "Reports received, by source and path (http or raw)", ["source", "path"]
)
REPORTS_ACCEPTED = Counter(
    "pantau_reports_accepted_total", "Reports accepted onto pantau.reports.v1", ["source", "path"]
)
REPORTS_DUPLICATE = Counter(
    "pantau_reports_duplicate_total", "Reports recognised as a repeat of an accepted (source, event_id)", ["source", "path"]
)
REPORTS_REJECTED = Counter(
    "pantau_reports_rejected_total", "Reports refused, by source and reason", ["source", "reason"]
)
DLQ_MESSAGES = Counter("pantau_dlq_messages_total", "Messages written to pantau.reports.dlq, by reason", ["reason"])
INGEST_REQUEST_SECONDS = Histogram(
    "pantau_ingest_request_duration_seconds",
    "HTTP request time in the ingest gateway, by endpoint and status code",
    ["endpoint", "code"],
    buckets=LATENCY_BUCKETS,
)
BROKER_ACK_SECONDS = Histogram(
    "pantau_ingest_broker_ack_seconds", "Time from produce to the broker's acks=all acknowledgement", buckets=LATENCY_BUCKETS
)
SOURCE_LAST_REPORT = Gauge(
    "pantau_source_last_report_timestamp_seconds", "Unix time of the last accepted report per source", ["source"]
)
VALIDATION_LAG = Gauge(
    "pantau_validation_lag_seconds", "Age of the newest raw message the validator has finished"
)
CONSUMER_LAG = Gauge(
    "pantau_consumer_lag_messages", "Messages behind the end of the partition", ["group", "topic", "partition"]
)

# Closed list of rejection reasons (also the DLQ reasons where they apply).
REASONS = (
    "unauthorized",
    "forbidden",
    "too_large",
    "unsupported_media_type",
    "invalid_json",
    "invalid",
    "unknown_region",
    "rate_limited",
    "unavailable",
)


def source_label(source: object, known: frozenset[str]) -> str:
    """Keep the `source` label bounded: configured sources by name, anything else `other`."""
    return source if isinstance(source, str) and source in known else "other"
