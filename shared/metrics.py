"""Every Prometheus metric Pantau exports, named once.

Names follow Prometheus conventions: `pantau_` prefix, base units, `_total` for counters.
Labels are bounded: sources come from the config (anything else is `other`), reasons and
channels are closed lists; no per-event or per-person label exists.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, generate_latest
from prometheus_client.utils import floatToGoString

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
FIELD_REPORTS = Counter(
    "pantau_field_reports_total", "Field reports from people, by channel (telegram, sms) and outcome "
    "(accepted, duplicate, rejected, stranger)", ["channel", "outcome"]
)
VERIFICATIONS = Counter(
    "pantau_verifications_total", "Decisions on reports, by decision (verified, rejected) and outcome "
    "(ingest: sent, unchanged; scoring: applied, pending, repeated)", ["decision", "outcome"]
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
REDIS_USED_MEMORY = Gauge(
    "pantau_redis_used_memory_bytes", "Redis used_memory, read by the ingest gateway at each scrape"
)
REDIS_MAXMEMORY = Gauge(
    "pantau_redis_maxmemory_bytes", "Redis maxmemory (0: unbounded), read by the ingest gateway at each scrape"
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


# --- notify: deliveries -------------------------------------------------------------------
# `channel_type` is one of webhook|email|telegram|slack|sms; `outcome` one of
# DELIVERY_OUTCOMES; `reason` one of services.notify.channels.base.REASONS.
DELIVERY_OUTCOMES = ("delivered", "retry", "failed", "dead", "interrupted")
DELIVERY_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
NOTIFICATION_ATTEMPTS = Counter(
    "pantau_notification_attempts_total",
    "Delivery attempts by channel type and outcome (delivered, retry, failed: handed to the fallback, "
    "dead: dead-lettered, interrupted: the worker died mid-attempt)",
    ["channel_type", "outcome"],
)
NOTIFICATION_FAILURES = Counter(
    "pantau_notification_failures_total", "Failed delivery attempts by channel type and reason", ["channel_type", "reason"]
)
NOTIFICATION_DELIVERY_SECONDS = Histogram(
    "pantau_notification_delivery_seconds",
    "Time from submit to the receiving end's acceptance (fallbacks count from the first submit)",
    ["channel_type"],
    buckets=DELIVERY_SECONDS_BUCKETS,
)
NOTIFICATION_RETRIES = Counter(
    "pantau_notification_retries_total", "Delivery attempts rescheduled after a retryable failure", ["channel_type"]
)
NOTIFICATION_DEAD_LETTERS = Counter(
    "pantau_notification_dead_letters_total", "Deliveries given up (after their fallback, if any)", ["channel_type"]
)

# --- notify: incidents --------------------------------------------------------------------
TTA_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)
INCIDENTS_OPENED = Counter("pantau_incidents_opened_total", "Incidents opened, by category", ["category"])
INCIDENTS_ACKNOWLEDGED = Counter("pantau_incidents_acknowledged_total", "Incident acknowledgements")
INCIDENTS_RESOLVED = Counter(
    "pantau_incidents_resolved_total", "Incidents resolved, by how (manual or auto)", ["how"]
)
TIME_TO_ACKNOWLEDGE = Histogram(
    "pantau_time_to_acknowledge_seconds",
    "From an incident's trigger (or its last level rise) to its acknowledgement",
    buckets=TTA_BUCKETS,
)
ESCALATION_STEPS = Counter("pantau_escalation_steps_total", "Escalation steps fired (first pages, escalations, reminders)")
NOTIFY_INHIBITED = Counter(
    "pantau_notify_inhibited_total",
    "Kabupaten/kota incidents whose pages a province incident of the same category held back (once per holder)",
)
# `outcome` is one of services.notify.replies.OUTCOMES (a closed list).
TELEGRAM_REPLIES = Counter(
    "pantau_notify_telegram_replies_total",
    "Telegram updates read by the reply poller, by what came of them (acknowledged, already_acknowledged, "
    "resolved, or the reason it was ignored)",
    ["outcome"],
)
OPEN_INCIDENTS = Gauge("pantau_open_incidents", "Incidents not yet resolved, by current level", ["level"])
SCORE_UPDATES_REJECTED = Counter(
    "pantau_score_updates_rejected_total", "Messages on pantau.scores.v1 the notify service could not read"
)
ESCALATION_OVERDUE = Gauge(
    "pantau_escalation_overdue_seconds", "How late the most overdue escalation timer is (0 when none is late)"
)
SILENT_SOURCES = Gauge("pantau_silent_sources", "Configured sources silent for longer than their silent_after_minutes")

# --- scoring -------------------------------------------------------------------------------
SCORE_UPDATES = Counter(
    "pantau_score_updates_total", "Score updates written to pantau.scores.v1, by level", ["level"]
)
SCORING_REPORTS = Counter(
    "pantau_scoring_reports_total",
    "Reports read by scoring, by outcome (counted, late, duplicate, redelivered, too_old, invalid; "
    "ahead: read before an earlier report, dropped and read again in order)",
    ["outcome"],
)
SCORING_LAG = Gauge(
    "pantau_scoring_lag_seconds",
    "Age of the newest report in the batch scoring has just finished (0 after a batch of ticks alone)",
)
SCORING_LAST_BATCH = Gauge(
    "pantau_scoring_last_batch_timestamp_seconds",
    "Unix time scoring last finished a batch; ticks make one every scoring.tick_interval_s when healthy",
)
# Not registered: its series go through REGION_LEVELS and reach /metrics by exposition().
REGION_LEVEL = Gauge(
    "pantau_region_level",
    "Alert level (0 normal, 1 waspada, 2 siaga, 3 awas) of every province and category, and of a "
    "kabupaten/kota and category only while at waspada or above",
    ["region", "category"],
    registry=None,
)


class RenderedSeries:
    """The series of one labelled gauge, each kept as its exposition line from the moment it is
    set. In a busy hour thousands of kabupaten/kota sit above normal, and prometheus_client
    rendering every one of them on every scrape cost the scoring worker ~50 ms of CPU a scrape."""

    def __init__(self, gauge: Gauge) -> None:
        self.name, self.labelnames = gauge._name, gauge._labelnames
        doc = gauge._documentation.replace("\\", r"\\").replace("\n", r"\n")
        self.head = f"# HELP {self.name} {doc}\n# TYPE {self.name} gauge\n"
        self.lines: dict[tuple[str, ...], str] = {}

    def set(self, labels: tuple[str, ...], value: float) -> None:
        pairs = sorted(zip(self.labelnames, labels))
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
        self.lines[labels] = f"{self.name}{{{text}}} {floatToGoString(value)}\n"

    def remove(self, labels: tuple[str, ...]) -> None:
        self.lines.pop(labels, None)

    def render(self) -> bytes:
        return (self.head + "".join(self.lines.values())).encode()


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


REGION_LEVELS = RenderedSeries(REGION_LEVEL)


def exposition() -> bytes:
    """The /metrics page of a process: the registered metrics, then pantau_region_level."""
    return generate_latest() + REGION_LEVELS.render()

# --- end to end ------------------------------------------------------------------------------
# Observed once per incident by notify, at the first `delivered` attempt of its first page:
# delivery time minus the earliest `received_at` of the reports in the scoring batch whose
# update opened it (header pantau-received-at on pantau.scores.v1). Incidents opened by a
# province roll-up or the watchdog have no such report and are not observed. No labels: an
# incident id or a region would be unbounded or per-event.
END_TO_END_SECONDS = Histogram(
    "pantau_end_to_end_seconds",
    "From ingest receiving the report behind a kabupaten/kota incident to the incident's first delivered page",
    buckets=DELIVERY_SECONDS_BUCKETS,
)
