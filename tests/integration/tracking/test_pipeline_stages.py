"""Every built-in stage in one small pipeline: outputs, MLflow parameters/metrics/artifacts, then all skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from organsim.data import Cohort
from organsim.tracking import load_pipeline, read_state, run_pipeline

PIPELINE = """
name: stages
run_dir: run
stages:
  generate: {patients: 24, hours: 20, seed: 2, shards: 2, workers: 1}
  split: {cohort: generate, seed: 1}
  scores: {cohort: split}
  meds: {stage: export, cohort: split, format: meds}
  from_meds: {stage: ingest, format: meds, source_stage: meds}
  counterfactual: {cohort: split, n_stays: 4, from_hour: 3, policies: [none, no-fluids]}
  train: {cohort: split, preset: micro, epochs: 1, batch_size: 8, n_bins: 8, device: cpu}
  coordinate: {model: train, cohort: split, steps: 2, problems: 4, group_size: 2, horizons: [1, 3], validation_problems: 4, device: cpu}
  calibrate: {model: coordinate, cohort: split, cases: 3, samples: 3, horizon: 6, device: cpu}
  evaluate: {model: calibrate, cohort: split, baselines: [locf], per_stay: 1, device: cpu}
  whatif: {model: calibrate, cohort: split, at: 4, strategies: [observed_care, early_norepinephrine], samples: 2, horizon: 6,
           match: false, device: cpu}
  trial: {model: coordinate, cohort: split, strategies: [early_norepinephrine, late_norepinephrine], at: 4, stays: "3",
          split: all, samples: 2, horizon: 6, device: cpu}
  cf_benchmark: {model: coordinate, cohort: split, stays: 2, decision_hours: [4], horizon: 6, samples: 2,
                 strategies: [early_norepinephrine, late_norepinephrine], device: cpu}
  synthesize: {model: coordinate, cohort: split, patients: 6, hours: 8, device: cpu}
  report_synthetic: {synthetic: synthesize, real: split, max_stays: 6}
"""

EXPECTED = {  # stage -> (a parameter, metrics that must be there, artifacts that must be there)
    "generate": ({"patients": "24", "shards": "2"}, {"stays", "hours", "septic_stays", "deaths", "missing_fraction"}, {"cohort.json"}),
    "split": ({"cohort": "generate", "fractions": "[0.7,0.15,0.15]"}, {"split_train", "split_validation", "split_test"}, {"cohort.json"}),
    "scores": ({"window_hours": "24"}, {"mean_sofa", "mean_apache_ii", "mean_news2", "mean_qsofa", "mean_sirs"}, {"events.parquet"}),
    "meds": ({"stage": "export", "format": "meds"}, {"events", "subjects", "codes", "files"}, {"metadata"}),
    "from_meds": ({"stage": "ingest", "source_stage": "meds"}, {"stays", "hours"}, {"cohort.json"}),
    "counterfactual": ({"policies": '["none","no-fluids"]'}, {"factual_reproduced", "factual.deaths", "none.mean_map", "no-fluids.deaths"},
                       {"outcomes.parquet", "check.json"}),
    "train": ({"preset": "micro", "processes": "1"}, {"best_validation_loss", "best_epoch", "n_parameters", "train_loss"},
              {"config.json", "model.safetensors"}),
    "coordinate": ({"algo": "grpo", "steps": "2"}, {"best_step", "policy.nmse_1h", "none.nmse_1h", "all.nmse_3h"},
                   {"coordination.json", "command.log"}),
    "calibrate": ({"cases": "3"}, {"coverage_before", "scale_median", "observed_values"}, {"band_calibration.json", "command.log"}),
    "evaluate": ({"baselines": '["locf"]'}, {"n_stays", "agents_all.mean_nmse_1h", "agents_none.mean_nmse_1h", "locf.mean_nmse_1h",
                                             "twin.mean_nmse_1h"},
                 {"metrics.json", "model.json", "twin.json", "evaluate.log", "trajectories_cardiovascular.png"}),
    "whatif": ({"at": "4"}, {"stay_id", "decision_hour", "observed_care.p_hypotension", "early_norepinephrine.p_hypotension"},
               {"whatif.json", "bands.parquet", "command.log"}),
    "trial": ({"stays": "3"}, set(), {"trial.json", "effects.parquet", "command.log"}),
    "cf_benchmark": ({"stays": "2"}, set(), {"metrics.json", "command.log"}),
    "synthesize": ({"patients": "6"}, {"stays", "hours", "septic_fraction"}, {"cohort.json", "command.log"}),
    "report_synthetic": ({"max_stays": "6"}, set(), {"metrics.json", "report.html", "command.log"}),
}


@pytest.mark.slow
def test_every_stage_runs_logs_to_mlflow_and_is_skipped_when_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "stages.yaml"
    path.write_text(PIPELINE)
    result = run_pipeline(load_pipeline(path))
    run_dir = tmp_path / "run"
    assert [(s.name, s.status) for s in result.stages] == [(name, "ran") for name in EXPECTED]
    assert result.tracking_uri == f"sqlite:///{run_dir / 'mlflow.db'}" and (run_dir / "mlartifacts").is_dir()
    assert not any((run_dir / ".work").iterdir())  # shard parts are removed once the cohort is merged
    assert Cohort.load(run_dir / "from_meds").stays.height == Cohort.load(run_dir / "split").stays.height == 24

    client = MlflowClient(result.tracking_uri)
    for outcome in result.stages:
        params, metric_names, artifact_names = EXPECTED[outcome.name]
        run = client.get_run(outcome.mlflow_run_id)
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert params.items() <= run.data.params.items(), outcome.name
        assert metric_names <= set(run.data.metrics), outcome.name
        assert artifact_names <= {a.path for a in client.list_artifacts(run.info.run_id)}, outcome.name
        assert outcome.headline
    metrics = {s.name: s.metrics.values for s in result.stages}
    assert metrics["generate"]["stays"] == 24 and sum(metrics["split"][f"split_{s}"] for s in ("train", "validation", "test")) == 24
    assert metrics["counterfactual"]["factual_reproduced"] == 1.0  # the oracle re-creates the recorded stays exactly
    report = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert metrics["evaluate"]["locf.mean_nmse_1h"] == pytest.approx(report["baselines"]["locf"]["mean_nmse"]["1"])
    assert metrics["train"]["best_epoch"] == 1
    assert (run_dir / "coordinate" / "reference_policy.safetensors").is_file()
    assert (run_dir / "calibrate" / "reference_policy.safetensors").is_file() and (run_dir / "calibrate" / "band_calibration.json").is_file()
    assert not (run_dir / "coordinate" / "band_calibration.json").exists()  # the calibrated model is a copy
    assert metrics["synthesize"]["stays"] == 6 and Cohort.load(run_dir / "synthesize").stays.height == 6
    assert any(k.endswith(".effect") for k in metrics["trial"])
    assert any(".nrmse_" in k for k in metrics["cf_benchmark"])
    assert metrics["report_synthetic"]  # the report's checks with a value

    again = run_pipeline(load_pipeline(path))
    assert [s.status for s in again.stages] == ["skipped"] * len(EXPECTED)
    assert {s.name: s.metrics.values for s in again.stages} == metrics
    assert all(entry["status"] == "done" for entry in read_state(run_dir)["stages"].values())
