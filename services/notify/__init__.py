"""The notify service: incidents, escalation policy, and delivery to coordinators over their channels."""
