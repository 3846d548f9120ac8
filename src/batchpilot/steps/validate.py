"""``transform.validate``: split rows into valid ones and rejects, by column rules.

Rules are checked with Arrow compute kernels over the memory-mapped input.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from batchpilot.errors import PermanentStepError
from batchpilot.steps._database import first_line
from batchpilot.steps.base import Step, StepConfig, StepContext, StepResult

REJECT_REASON_COLUMN = "_reject_reason"
REJECTS_OUTPUT = "rejects"
_SEPARATOR = "; "


class Rule(BaseModel):
    """Checks on one column; a row breaking any of them is rejected.

    NULL values pass every check but ``not_null`` (as in SQL constraints).
    ``unique`` rejects every row whose value appears more than once.
    ``regex`` searches the value's text (anchor with ``^…$`` for a full match).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    not_null: bool = False
    unique: bool = False
    regex: str | None = None
    min: Any = None
    max: Any = None
    allowed: list[Any] | None = None

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _has_a_check(self) -> Rule:
        if not (
            self.not_null
            or self.unique
            or self.regex is not None
            or self.min is not None
            or self.max is not None
            or self.allowed is not None
        ):
            raise ValueError(
                f"rule for column '{self.column}' has no check "
                "(use not_null, unique, regex, min, max or allowed)"
            )
        return self


class ValidateConfig(StepConfig):
    rules: list[Rule]
    min_valid_ratio: float | None = Field(default=None, ge=0, le=1)
    max_rejected_ratio: float | None = Field(default=None, ge=0, le=1)


class ValidateTransform(Step[ValidateConfig]):
    """Checks every row against ``rules``: valid rows are the output, the others go to the
    ``rejects`` side output with a ``_reject_reason`` column (``column: check; …``).

    Raises :class:`PermanentStepError` (after writing both outputs) when the
    valid ratio is below ``min_valid_ratio`` or the rejected ratio above
    ``max_rejected_ratio``, and before anything when a rule names an unknown column.
    """

    compensable = False

    type_name = "transform.validate"
    Config = ValidateConfig

    def run(self, ctx: StepContext) -> StepResult:
        config = self.config
        table = ctx.input_table()
        unknown = [r.column for r in config.rules if r.column not in table.column_names]
        if unknown:
            raise PermanentStepError(
                f"validation rule names unknown column(s) {', '.join(unknown)} "
                f"(input columns: {', '.join(table.column_names)})"
            )
        masks: list[Any] = []
        reasons: list[Any] = []
        for rule in config.rules:
            for label, broken in _broken_masks(table[rule.column], rule):
                # a NULL in a mask means "not broken"
                broken = pc.fill_null(broken, False)
                masks.append(broken)
                reasons.append(pc.if_else(broken, f"{rule.column}: {label}{_SEPARATOR}", ""))
        total = table.num_rows
        if reasons and total:
            joined = pc.binary_join_element_wise(*reasons, "")
            reason = pc.replace_substring_regex(joined, f"{_SEPARATOR}$", "")
            rejected_mask = functools.reduce(pc.or_, masks)
        else:
            reason = pa.nulls(total, pa.string())
            rejected_mask = pa.array([False] * total, pa.bool_())
        valid = table.filter(pc.invert(rejected_mask))
        rejects = table.filter(rejected_mask).append_column(
            REJECT_REASON_COLUMN, pc.filter(reason, rejected_mask).cast(pa.string())
        )
        ref = ctx.write_output(valid)
        rejects_ref = ctx.write_output(rejects, name=REJECTS_OUTPUT)
        valid_ratio = valid.num_rows / total if total else 1.0
        rejected_ratio = rejects.num_rows / total if total else 0.0
        metadata = {
            "valid": valid.num_rows,
            "rejected": rejects.num_rows,
            "valid_ratio": round(valid_ratio, 6),
            "rejects_path": rejects_ref.path,
        }
        if rejects.num_rows:
            ctx.log.warning(
                "%d of %d rows rejected (see %s)", rejects.num_rows, total, rejects_ref.path
            )
        if config.min_valid_ratio is not None and valid_ratio < config.min_valid_ratio:
            raise PermanentStepError(
                f"only {valid_ratio:.2%} of rows are valid ({valid.num_rows} of {total}), below "
                f"min_valid_ratio {config.min_valid_ratio:.2%}; rejects are in {rejects_ref.path}"
            )
        if config.max_rejected_ratio is not None and rejected_ratio > config.max_rejected_ratio:
            raise PermanentStepError(
                f"{rejected_ratio:.2%} of rows were rejected ({rejects.num_rows} of {total}), "
                f"above max_rejected_ratio {config.max_rejected_ratio:.2%}; "
                f"rejects are in {rejects_ref.path}"
            )
        return StepResult(
            output=ref,
            rows_in=total,
            rows_out=valid.num_rows,
            rows_rejected=rejects.num_rows,
            side_outputs={REJECTS_OUTPUT: rejects_ref},
            metadata=metadata,
        )


def _broken_masks(column: pa.ChunkedArray, rule: Rule) -> list[tuple[str, Any]]:
    """(label, mask) for each check of ``rule``; mask is true where the row breaks it."""
    masks: list[tuple[str, Any]] = []
    if rule.not_null:
        masks.append(("not_null", pc.is_null(column)))
    if rule.unique:
        counts = pc.value_counts(column)
        repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
        masks.append(("unique", pc.is_in(column, value_set=repeated, skip_nulls=True)))
    if rule.regex is not None:
        try:
            as_text = column if pa.types.is_string(column.type) else column.cast(pa.string())
            masks.append(
                (f"regex {rule.regex}", pc.invert(pc.match_substring_regex(as_text, rule.regex)))
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise _rule_error(rule, "regex", column.type, exc) from exc
    if rule.min is not None:
        masks.append((f"min {rule.min}", pc.less(column, _scalar(rule, "min", rule.min, column))))
    if rule.max is not None:
        masks.append(
            (f"max {rule.max}", pc.greater(column, _scalar(rule, "max", rule.max, column)))
        )
    if rule.allowed is not None:
        try:
            allowed = pa.array(rule.allowed).cast(column.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise _rule_error(rule, "allowed", column.type, exc) from exc
        outside = pc.invert(pc.is_in(column, value_set=allowed, skip_nulls=True))
        masks.append(("allowed", pc.if_else(pc.is_null(column), False, outside)))
    return masks


def _scalar(rule: Rule, check: str, value: Any, column: pa.ChunkedArray) -> pa.Scalar:
    try:
        return pa.scalar(value).cast(column.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise _rule_error(rule, check, column.type, exc) from exc


def _rule_error(
    rule: Rule, check: str, column_type: pa.DataType, exc: BaseException
) -> PermanentStepError:
    return PermanentStepError(
        f"rule '{check}' on column '{rule.column}' does not fit its type {column_type}: "
        f"{first_line(str(exc))}"
    )


STEPS = (ValidateTransform,)
