"""The train stage under `accelerate launch --multi_gpu --num_processes 2` on CPU: two gloo processes, one model."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from organsim.agents.checkpoint import TrainedAgents
from organsim.agents.model import PRESETS
from organsim.agents.training import tiled_windows
from organsim.data.windows import HourlyArrays
from organsim.tracking import load_pipeline, run_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "agents"))
from agent_cohorts import synthetic_agent_cohort  # noqa: E402

pytestmark = pytest.mark.exclusive  # one rendezvous port or one local cluster at a time (tests/conftest.py)

BATCH = 4


@pytest.mark.slow
def test_train_stage_runs_two_processes_under_accelerate_launch(catalog, tmp_path: Path) -> None:
    cohort = synthetic_agent_cohort(catalog, n_stays=20, min_hours=20, max_hours=34, seed=1)
    cohort.save(tmp_path / "cohort")
    path = tmp_path / "accelerate.yaml"
    path.write_text(
        "name: accelerate\nrun_dir: run\nstages:\n"
        "  cohort: {stage: ingest, format: cohort, source: cohort}\n"
        f"  train: {{cohort: cohort, preset: micro, epochs: 2, batch_size: {BATCH}, n_bins: 8, device: cpu, processes: 2}}\n"
    )
    result = run_pipeline(load_pipeline(path))
    model_dir = tmp_path / "run" / "train"
    assert [s.status for s in result.stages] == ["ran", "ran"]
    assert "organ agents trained" in (model_dir / "train.log").read_text()  # organsim train's own output

    agents = TrainedAgents.load(model_dir)
    state = agents.training["state"]
    assert state["finished"] and [r["epoch"] for r in state["history"]] == [1, 2]
    # each of the two processes takes every other batch: half the optimiser steps of one process
    config = agents.training["config"]
    train = cohort.split(tuple(config["split_fractions"]), seed=config["split_seed"]).subset(split="train")
    windows = len(tiled_windows(HourlyArrays.from_cohort(train), PRESETS["micro"]["window_hours"]).positions)
    assert [r["steps"] for r in state["history"]] == [math.ceil(math.ceil(windows / BATCH) / 2)] * 2

    client = MlflowClient(result.tracking_uri)
    train_run = client.get_run(result.stages[1].mlflow_run_id)
    assert train_run.data.params["processes"] == "2"
    assert len(client.get_metric_history(train_run.info.run_id, "train_loss")) == 2
    assert {"config.json", "model.safetensors", "train.log"} <= {a.path for a in client.list_artifacts(train_run.info.run_id)}
