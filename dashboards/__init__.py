"""The monitoring mixin: alert rules, dashboards and the runbook, generated from Python."""
