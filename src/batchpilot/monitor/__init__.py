"""Monitoring: the day's aggregates (overview), rules and alerts over the runs in the store."""
