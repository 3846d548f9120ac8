"""Pipeline specifications: parsing, checking and the immutable model."""

from batchpilot.spec.loader import PIPELINE_SUFFIXES, build_pipeline, load_pipeline_file
from batchpilot.spec.model import NodeSpec, PipelineSpec, RetryBackoff, RetryPolicy, TriggerRule

__all__ = [
    "PIPELINE_SUFFIXES",
    "NodeSpec",
    "PipelineSpec",
    "RetryBackoff",
    "RetryPolicy",
    "TriggerRule",
    "build_pipeline",
    "load_pipeline_file",
]
