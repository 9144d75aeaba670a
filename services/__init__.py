"""The three Pantau services: ingest, scoring, notify."""
