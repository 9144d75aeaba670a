"""Kafka topic names of contract v1, defined once for every service and test."""

REPORTS_RAW = "pantau.reports.raw"
REPORTS_V1 = "pantau.reports.v1"
REPORTS_DLQ = "pantau.reports.dlq"
SCORES_V1 = "pantau.scores.v1"
ESCALATIONS_V1 = "pantau.escalations.v1"
NOTIFICATIONS_V1 = "pantau.notifications.v1"
# An operator's verify/reject decision on one report (shared/verifications.py), keyed like
# pantau.reports.v1 so it reaches the scoring worker that owns the report's cell.
VERIFICATIONS_V1 = "pantau.verifications.v1"

ALL = (REPORTS_RAW, REPORTS_V1, REPORTS_DLQ, SCORES_V1, ESCALATIONS_V1, NOTIFICATIONS_V1, VERIFICATIONS_V1)

# --- internal to scoring -------------------------------------------------------------------
# Not part of the contract and not in ALL: the scoring worker (Faust) declares them itself,
# with kafka.partitions partitions, so they are co-partitioned with pantau.reports.v1.
SCORING_TICKS = "pantau.scoring.ticks"        # one tick per partition: close elapsed buckets
SCORING_PROVINCE = "pantau.scoring.province"  # kabupaten/kota snapshots keyed by province
SCORING_BACKFILL = "pantau.scoring.backfill"  # `pantau backfill` history, keyed by kabupaten/kota

# --- message headers (beside the contract bodies, which they do not change) ------------------
# On pantau.scores.v1: the earliest `received_at` of the reports whose batch produced the
# update, so notify can observe pantau_end_to_end_seconds (report received → first page).
RECEIVED_AT_HEADER = "pantau-received-at"
