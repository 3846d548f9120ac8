"""``load.postgres``: bulk-load the input into a PostgreSQL table with COPY, exactly once.

The work is in :mod:`batchpilot.steps._pg_load`, imported when a load runs: a
run then checks its pipeline without paying for the driver (psycopg, pgpq),
and a load that starts early imports it while its extract runs.
"""

from __future__ import annotations

from batchpilot.steps._database import LoadConfig
from batchpilot.steps.base import Step, StepContext, StepResult


class PostgresLoadConfig(LoadConfig):
    pass


class PostgresLoad(Step[PostgresLoadConfig]):
    """Loads the input into ``table`` (``schema.table`` allowed) by ``mode``:

    - ``append`` COPYs the rows in;
    - ``replace`` empties the table (TRUNCATE) then COPYs, in the same transaction;
      an input of zero rows fails (permanent, the table untouched) unless
      ``allow_empty: true``;
    - ``upsert`` COPYs into a temporary table, then inserts new ``key``\\ s and
      updates the rows whose values changed (identical rows are not rewritten).

    With ``create`` (the default) a missing table (and schema) is created from
    the input's Arrow schema, with PRIMARY KEY(key) when a key is given. Columns
    are matched by name. Everything happens in one transaction with the load's
    record in ``batchpilot_loads``: a failure, a cancel or a crash leaves the
    target as it was, and a committed load is never repeated by a retry or a
    resume. Raises :class:`PermanentStepError` for bad data (a value that does
    not fit, an input column the table lacks) and :class:`StepError` for
    connection or other database failures.
    """

    type_name = "load.postgres"
    Config = PostgresLoadConfig
    connection_fields = ("connection",)
    starts_early = True

    def run(self, ctx: StepContext) -> StepResult:
        from batchpilot.steps._pg_load import load

        return load(ctx, self.config)


STEPS = (PostgresLoad,)
