"""Watching pipelines: run history, the day's overview, stats and metrics, alert rules
evaluated at a run's end and on a clock, alert episodes with reminders and recovery notices."""
