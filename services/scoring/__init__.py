"""Scoring: turn per-region report counts into expected values, upper bounds and alarms."""
