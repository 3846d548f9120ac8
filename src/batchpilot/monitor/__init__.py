"""Watching pipelines: run history and metrics, alert rules evaluated at a run's end and on
a clock, alert episodes with reminders and recovery notices, and retention."""
