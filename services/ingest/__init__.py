"""Ingest: the HTTP gateway and the raw-topic validator, both feeding pantau.reports.v1."""
