"""Smoke test of bench/agents_physionet.py with a tiny budget: train, score, targets and tables; then score a given model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from agent_cohorts import synthetic_agent_cohort

BENCH = Path(__file__).resolve().parents[3] / "bench" / "agents_physionet.py"


@pytest.mark.slow
def test_the_agents_benchmark_trains_scores_and_checks_the_targets(catalog, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_agents", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cohort_dir = synthetic_agent_cohort(catalog, n_stays=20, min_hours=20, max_hours=34, seed=2).save(tmp_path / "cohort")
    common = ["--cohort", str(cohort_dir), "--baselines", "locf", "--device", "cpu"]
    written = bench.main([*common, "--preset", "micro", "--epochs", "1", "--batch-size", "8", "--mean-loss-weight", "1.0",
                          "--work", str(tmp_path / "work"), "--out", str(tmp_path / "trained.json")])
    record = json.loads(written.read_text())
    assert set(record["results"]["forecasters"]) == {"agents_all", "agents_none", "locf"}
    assert record["train_config"]["mean_loss_weight"] == 1.0 and len(record["training"]["history"]) == 1
    checks = record["checks"]["agents_all"]
    locf, agents = record["results"]["forecasters"]["locf"], record["results"]["forecasters"]["agents_all"]
    assert checks["beats"]["locf"]["1"] == (agents["mean_nmse"]["1"] < locf["mean_nmse"]["1"])
    assert checks["gain_over_locf_at_1h"] == pytest.approx(1 - agents["mean_nmse"]["1"] / locf["mean_nmse"]["1"])
    assert record["markdown"]["nmse"].startswith("| forecaster | h |") and "| locf | 24 |" in record["markdown"]["mse_minmax"]
    # scoring the trained model again, without training, gives the same figures
    again = json.loads(bench.main([*common, "--model", str(tmp_path / "work" / "model"), "--work", str(tmp_path / "again"),
                                   "--out", str(tmp_path / "again.json")]).read_text())
    assert again["results"]["forecasters"]["agents_all"]["mean_nmse"] == agents["mean_nmse"]
    assert again["training"]["history"] == record["training"]["history"] and again["train_config"] == record["train_config"]
