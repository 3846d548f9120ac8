"""Watching pipelines: run history and statistics (``history``, ``stats``), the day's
overview (``overview``), Prometheus metrics (``metrics``), retention (``retention``), and
alert rules evaluated at a run's end and on a clock, as episodes with reminders and
recovery notices (``rules``, ``episodes``, ``evaluate``, ``deadlines``).

Each part is imported on its own; nothing is re-exported here, so the parts stay
independent.
"""
