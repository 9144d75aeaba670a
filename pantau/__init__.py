"""Helpers for systems that receive what Pantau sends (import `pantau.webhook` in a receiver)."""
