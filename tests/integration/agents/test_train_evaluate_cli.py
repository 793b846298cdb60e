"""`organsim train` then `organsim evaluate` on a small synthetic cohort: the CI smoke test of issue 4."""

from __future__ import annotations

import json

import pytest
from agent_cohorts import synthetic_agent_cohort
from typer.testing import CliRunner

from organsim.catalog import SYSTEMS
from organsim.cli import app


@pytest.mark.slow
def test_train_then_evaluate(catalog, tmp_path):
    cohort_dir = synthetic_agent_cohort(catalog, n_stays=20, min_hours=20, max_hours=34, seed=1).save(tmp_path / "cohort")
    model_dir, report_dir = tmp_path / "model", tmp_path / "report"
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "--cohort", str(cohort_dir), "--out", str(model_dir), "--preset", "micro",
                                  "--device", "cpu", "--epochs", "1", "--batch-size", "8", "--n-bins", "8"])
    assert trained.exit_code == 0, trained.output
    assert "best epoch 1" in trained.output and str(model_dir) in trained.output
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "last" / "optimizer.pt").is_file()

    evaluated = runner.invoke(app, ["evaluate", "--model", str(model_dir), "--cohort", str(cohort_dir), "--out", str(report_dir),
                                    "--baselines", "locf,ridge", "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert metrics["primary"] == "agents_all"
    assert set(metrics["baselines"]) == {"agents_none", "twin", "locf", "ridge"}
    for h in ("1", "6", "24"):
        assert metrics["mean_nmse"][h] is None or metrics["mean_nmse"][h] >= 0
    assert metrics["mean_nmse"]["1"] > 0
    assert set(metrics["systems"]) == set(SYSTEMS)
    assert metrics["systems"]["cardiovascular"]["nmse"]["1"] > 0 and "mse_minmax" in metrics["systems"]["renal"]
    assert metrics["baselines"]["locf"]["systems"]["cardiovascular"]["nmse"]["1"] > 0
    assert sorted(p.name for p in report_dir.glob("trajectories_*.png"))
    # the coordinated twin: scored like the agents (also by SOFA stratum), and its own report
    assert metrics["baselines"]["twin"]["mean_nmse"]["1"] > 0 and metrics["baselines"]["twin"]["by_sofa_stratum"]
    twin = json.loads((report_dir / "twin.json").read_text())
    assert all(twin["constraint_violations"]["corrected"][rule] == 0 for rule in ("range", "rate_limit", "map_order"))
    assert len(twin["reference_choices"]["share"]) == len(SYSTEMS) and twin["event_chains"]["n_stays"] > 0
    assert (report_dir / "reference_choices.png").is_file() and "coordinated twin" in evaluated.output

    # a bad model directory is one red line, not a traceback
    failed = runner.invoke(app, ["evaluate", "--model", str(tmp_path), "--cohort", str(cohort_dir), "--out", str(report_dir)])
    assert failed.exit_code == 2 and "not a model directory" in " ".join(failed.output.split())
