"""Layer 8: declarative pipelines tracked in MLflow, and scale-out helpers.

>>> from organsim.tracking import load_pipeline, run_pipeline          # doctest: +SKIP
>>> result = run_pipeline(load_pipeline("pipelines/demo.yaml"))         # doctest: +SKIP
>>> print(result.ui_command)                                            # doctest: +SKIP

Modules: :mod:`~organsim.tracking.registry` (what a stage is; the registry),
:mod:`~organsim.tracking.stages` (the built-in stages), :mod:`~organsim.tracking.spec` (pipeline
files and their validation), :mod:`~organsim.tracking.fingerprints` (content hashes),
:mod:`~organsim.tracking.pipeline` (the runner: skip, resume, state file),
:mod:`~organsim.tracking.mlflow_log` (MLflow records), :mod:`~organsim.tracking.distributed`
(sharded engine generation on local processes or Ray).
"""

from organsim.tracking.distributed import generate_sharded
from organsim.tracking.mlflow_log import default_tracking_uri, ui_command
from organsim.tracking.pipeline import PipelineResult, StageOutcome, read_state, run_pipeline
from organsim.tracking.registry import (
    STAGES,
    Consumes,
    ExternalInput,
    Stage,
    StageContext,
    StageMetrics,
    StageParams,
    register_stage,
)
from organsim.tracking.spec import PipelineConfigError, PipelineSpec, StageSpec, load_pipeline

__all__ = [
    "STAGES",
    "Consumes",
    "ExternalInput",
    "PipelineConfigError",
    "PipelineResult",
    "PipelineSpec",
    "Stage",
    "StageContext",
    "StageMetrics",
    "StageOutcome",
    "StageParams",
    "StageSpec",
    "default_tracking_uri",
    "generate_sharded",
    "load_pipeline",
    "read_state",
    "register_stage",
    "run_pipeline",
    "ui_command",
]
