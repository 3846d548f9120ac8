"""Watching pipelines: run history and statistics (``history``, ``stats``), Prometheus
metrics (``metrics``) and retention (``retention``).

Each module is imported by its own name; this package re-exports nothing, so
its parts (and the alert rules beside them) stay independent.
"""
