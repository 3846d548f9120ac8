"""How a pipeline is laid out as Airflow tasks: ids, extra tasks and their wiring.

Pure functions of the :class:`PipelineSpec`, shared by the exporter (which
writes the DAG) and the remote-run follower (which reads task states back).

Each node becomes one task with the node's id. Two kinds of extra tasks exist,
both with dotted ids, which node ids cannot contain, so they never collide:

``compensate.<node>``
    Undoes ``<node>`` when the run failed and ``<node>`` had succeeded. It
    runs after every pipeline task is done and after the compensations of the
    node's descendants (the saga's reverse order).
``batchpilot.outcome``
    Fails when any pipeline task failed, so the DAG run fails exactly when a
    local run would. Only added where Airflow's own rule (a run fails when a
    leaf fails) could disagree: with compensations, or with a trigger rule that
    lets a task run after a failure.
"""

from __future__ import annotations

import re

from batchpilot.spec.model import PipelineSpec, TriggerRule

COMPENSATE_PREFIX = "compensate."
OUTCOME_TASK_ID = "batchpilot.outcome"

#: Trigger rules under which a failed upstream makes the task upstream_failed,
#: so a failure always reaches a leaf and fails the DAG run by itself.
_FAILURE_PROPAGATING = frozenset({TriggerRule.ALL_SUCCESS, TriggerRule.NONE_FAILED})
_DAG_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def dag_id_for(pipeline_name: str) -> str:
    """The DAG id of a pipeline: its name, with characters Airflow refuses turned to ``_``."""
    return _DAG_ID_UNSAFE.sub("_", pipeline_name)[:250] or "pipeline"


def dag_file_name(pipeline_name: str) -> str:
    """The DAG file's name in a DAGs folder."""
    return f"{dag_id_for(pipeline_name)}.py"


def compensation_task_id(node_id: str) -> str:
    """The id of the task that compensates ``node_id``."""
    return f"{COMPENSATE_PREFIX}{node_id}"


def compensated_node(task_id: str) -> str | None:
    """The node a compensation task undoes, or None for any other task id."""
    return task_id[len(COMPENSATE_PREFIX) :] if task_id.startswith(COMPENSATE_PREFIX) else None


def needs_outcome_task(spec: PipelineSpec) -> bool:
    """True when the DAG needs ``batchpilot.outcome`` to fail exactly when the pipeline fails."""
    return any(
        node.compensate is not None or node.trigger_rule not in _FAILURE_PROPAGATING
        for node in spec.nodes
    )


def descendants(spec: PipelineSpec, node_id: str) -> list[str]:
    """Every node downstream of ``node_id``, directly or not, in pipeline order."""
    children = spec.downstream()
    seen: set[str] = set()
    stack = list(children[node_id])
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(children[current])
    return [n for n in spec.node_ids if n in seen]


def compensation_upstream(spec: PipelineSpec, node_id: str) -> list[str]:
    """Task ids a compensation task waits for: every node, then the compensations of
    ``node_id``'s descendants, so undoing runs in reverse dependency order."""
    later = [
        compensation_task_id(d)
        for d in descendants(spec, node_id)
        if spec.node(d).compensate is not None
    ]
    return [*spec.node_ids, *later]
