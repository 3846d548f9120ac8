"""``empty``: a task that does nothing (a join point, or a placeholder)."""

from __future__ import annotations

from batchpilot.steps.base import Step, StepConfig, StepContext, StepResult


class EmptyStep(Step[StepConfig]):
    """Does nothing and succeeds; useful to join branches."""

    compensable = False
    never_blocks = True

    type_name = "empty"

    def run(self, ctx: StepContext) -> StepResult:
        return StepResult()


STEPS = (EmptyStep,)
