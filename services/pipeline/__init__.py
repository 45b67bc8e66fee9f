"""Pipeline files: the cells a deployment routes, its protected cells, budget and task
classes, as YAML (docs/pipeline.md). The router, workers, judge and learner read theirs from
``AGENSBUS_PIPELINE``; a scenario names the one it simulates."""

from services.pipeline.loader import (
    DEFAULT_PIPELINE,
    PipelineError,
    deployed_pipeline,
    load_pipeline,
    parse_pipeline,
    shipped_pipelines,
)

__all__ = [
    "DEFAULT_PIPELINE",
    "PipelineError",
    "deployed_pipeline",
    "load_pipeline",
    "parse_pipeline",
    "shipped_pipelines",
]
