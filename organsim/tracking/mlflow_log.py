"""MLflow records of pipeline runs: one parent run per pipeline run, one nested run per stage.

The store is ``$MLFLOW_TRACKING_URI`` when set (any MLflow server), else a SQLite database in the
run directory (``<run_dir>/mlflow.db``, artifacts in ``<run_dir>/mlartifacts``; MLflow 3 refuses
the old ``./mlruns`` file store). Browse it with ``mlflow ui --backend-store-uri sqlite:///...``
(:func:`ui_command`). Nested runs carry MLflow's ``mlflow.parentRunId`` tag, so the UI shows them
under their pipeline run. mlflow is imported only when a tracker is made.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from organsim.tracking.registry import StageMetrics

LOCAL_DATABASE = "mlflow.db"
LOCAL_ARTIFACTS = "mlartifacts"
PARENT_TAG = "mlflow.parentRunId"
STATUS_TAG = "organsim.status"
"""Tag of a stage run: ``ran`` or ``skipped`` (outputs reused; ``organsim.produced_by`` names the run that made them)."""
PRODUCED_BY_TAG = "organsim.produced_by"
QUIET_LOGGERS = ("mlflow.store.db.utils", "alembic.runtime.migration")


def metric_key(name: str) -> str:
    """``name`` with every character MLflow refuses in a metric name (anything but letters, digits and
    ``_ - . : / `` and space) replaced by ``_``: ``"sepsis_6h AUROC drop, logistic"`` -> ``"sepsis_6h AUROC drop_ logistic"``."""
    return re.sub(r"[^0-9A-Za-z_\-. :/]", "_", name)


def default_tracking_uri(run_dir: str | Path) -> str:
    """``$MLFLOW_TRACKING_URI``, else the SQLite store ``sqlite:///<run_dir>/mlflow.db`` (absolute)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(run_dir) / LOCAL_DATABASE).resolve()}"


def ui_command(tracking_uri: str) -> str:
    """How to browse the store: ``mlflow ui --backend-store-uri URI`` (or the server's address)."""
    if tracking_uri.startswith(("http://", "https://", "databricks")):
        return f"open {tracking_uri}"
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def flat_params(values: Mapping[str, Any]) -> dict[str, str]:
    """Parameters as MLflow strings: scalars as text, lists and mappings as compact JSON."""
    return {
        key: value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
        for key, value in values.items()
    }


class PipelineTracker:
    """Writes a pipeline run and its stage runs to one MLflow experiment.

    Parameters
    ----------
    tracking_uri
        The MLflow store.
    experiment
        Experiment name (the pipeline's name); created when absent.
    artifact_root
        Where a newly created experiment keeps artifacts (used for the local SQLite store; a
        server chooses its own when ``None``).
    """

    def __init__(self, tracking_uri: str, experiment: str, *, artifact_root: Path | None = None) -> None:
        from mlflow import MlflowClient

        for name in QUIET_LOGGERS:  # schema creation logs at INFO; nothing a user acts on
            logging.getLogger(name).setLevel(logging.WARNING)
        self.tracking_uri = tracking_uri
        with warnings.catch_warnings():
            # mlflow 3.17's SQLAlchemy store (made here) uses a loader option SQLAlchemy 2.1 deprecates
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mlflow\.store\.")
            self.client = MlflowClient(tracking_uri=tracking_uri)
            found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            location = artifact_root.resolve().as_uri() if artifact_root is not None else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)

    def start_pipeline(self, run_name: str, *, params: Mapping[str, Any], tags: Mapping[str, str],
                       resume_run_id: str | None = None) -> str:
        """Open the parent run (or reopen ``resume_run_id`` of an interrupted run); returns its id."""
        if resume_run_id is not None:
            self.client.update_run(resume_run_id, status="RUNNING")
            return resume_run_id
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags))
        self._log_params(run.info.run_id, flat_params(params))
        return run.info.run_id

    def start_stage(self, parent_run_id: str, stage_name: str, *, tags: Mapping[str, str]) -> str:
        """Open a nested run for a stage under ``parent_run_id``; returns its id."""
        run = self.client.create_run(self.experiment_id, run_name=stage_name, tags={PARENT_TAG: parent_run_id, **tags})
        return run.info.run_id

    def log_stage(self, run_id: str, *, params: Mapping[str, Any], metrics: StageMetrics, artifacts: list[Path]) -> None:
        """Record a stage's parameters, metrics (series with steps 1..n) and artifact files or directories."""
        from mlflow.entities import Metric

        self._log_params(run_id, flat_params(params))
        now = int(time.time() * 1000)
        entries = [Metric(metric_key(key), float(value), now, 0) for key, value in metrics.values.items()]
        entries += [Metric(metric_key(key), float(value), now, step) for key, series in metrics.series.items()
                    for step, value in enumerate(series, start=1)]
        for lo in range(0, len(entries), 1000):  # MLflow's batch limit
            self.client.log_batch(run_id, metrics=entries[lo : lo + 1000])
        self.log_artifacts(run_id, artifacts)

    def log_artifacts(self, run_id: str, paths: list[Path]) -> None:
        """Upload files (to the run's root) and directories (under their own name)."""
        for path in paths:
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path=path.name)
            elif path.is_file():
                self.client.log_artifact(run_id, str(path))

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        """Close a run with ``FINISHED``, ``FAILED`` or ``KILLED``."""
        self.client.set_terminated(run_id, status=status)

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = list(params.items())
        for lo in range(0, len(items), 100):  # MLflow's batch limit
            self.client.log_batch(run_id, params=[Param(k, v) for k, v in items[lo : lo + 100]])
