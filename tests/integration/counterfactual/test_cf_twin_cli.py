"""``organsim whatif``, ``organsim trial`` and ``organsim cf-benchmark`` end to end on a micro twin."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from organsim.cli import app
from organsim.data import Cohort

RUNNER = CliRunner()


def _flat(output: str) -> str:
    return " ".join(output.split())  # rich wraps long lines at the terminal width


@pytest.mark.slow
def test_whatif_writes_every_output(tmp_path: Path, micro_twin_model: Path, twin_cohort_dir: Path) -> None:
    out, behaviour = tmp_path / "whatif", tmp_path / "behaviour"
    args = ["whatif", "--model", str(micro_twin_model), "--cohort", str(twin_cohort_dir), "--stay", "4", "--at", "8",
            "--strategy", "early_norepinephrine", "--strategy", "liberal_fluids", "--samples", "3", "--horizon", "24",
            "--out", str(out), "--behaviour", str(behaviour), "--device", "cpu"]
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(["whatif.json", "trajectories.parquet", "bands.parquet", "sample_outcomes.parquet", "scores.parquet",
                              "events.parquet", "consulted.parquet", "corrections.parquet", "adjustments.parquet",
                              "overlap_actions.parquet", "matched.parquet", "matched_stays.parquet"])
    overview = json.loads((out / "whatif.json").read_text())
    assert (overview["stay_id"], overview["decision_hour"], overview["n_samples"], overview["simulator"]) == (4, 8, 3, "twin")
    liberal = overview["strategies"]["liberal_fluids"]
    assert {(s["score"], s["horizon_hours"]) for s in liberal["scores"]} >= {("sofa", 24), ("apache_ii", 24)}
    assert liberal["overlap"] is not None and "corrections" in liberal and "overlap_adjustments" in liberal
    trajectories = pl.read_parquet(out / "trajectories.parquet")
    assert trajectories.height == 2 * 3 * 24 and set(trajectories["strategy"]) == {"early_norepinephrine", "liberal_fluids"}
    assert (behaviour / "behaviour.json").is_file()  # fitted once, loaded next time
    assert "Wrote" in result.output and "trajectories.parquet" in result.output
    again = RUNNER.invoke(app, args)
    assert again.exit_code == 2 and "already exists" in _flat(again.output)


@pytest.mark.slow
def test_trial_and_cf_benchmark_write_their_results(tmp_path: Path, micro_twin_model: Path, twin_cohort_dir: Path) -> None:
    common = ["--model", str(micro_twin_model), "--cohort", str(twin_cohort_dir), "--device", "cpu", "--behaviour", str(tmp_path / "b")]
    trial = RUNNER.invoke(app, ["trial", *common, "--strategy", "early_norepinephrine", "--strategy", "late_norepinephrine",
                                "--at", "8", "--stays", "3", "--samples", "2", "--horizon", "24", "--out", str(tmp_path / "trial")])
    assert trial.exit_code == 0, trial.output
    effects = pl.read_parquet(tmp_path / "trial" / "effects.parquet")
    within = effects.filter(pl.col("outcome").is_in(["sofa_at_24h", "apache_ii_at_24h", "died"]))
    assert within.height == 3 and (within["n_stays"] == 3).all()  # the 48 and 72 h scores lie beyond the 24 h horizon
    assert json.loads((tmp_path / "trial" / "trial.json").read_text())["n_cases"] == 3
    bench = RUNNER.invoke(app, ["cf-benchmark", *common, "--stays", "3", "--decision-hours", "6,8", "--horizon", "8", "--samples", "2",
                                "--strategy", "early_norepinephrine", "--strategy", "late_norepinephrine", "--out", str(tmp_path / "bench")])
    assert bench.exit_code == 0, bench.output
    metrics = json.loads((tmp_path / "bench" / "metrics.json").read_text())
    assert sorted(metrics["simulators"]) == ["twin", "twin_no_overlap_adjustment", "twin_treatment_blind"]
    twin = metrics["simulators"]["twin"]
    assert set(twin["nrmse"]["cardiovascular"]) == {"1", "6"}  # horizons within the 8 hours
    assert 0 <= twin["coverage_90"]["all"] <= 1
    effects = twin["effects"]["early_norepinephrine-late_norepinephrine"]
    assert effects["map_at_6h"]["n"] == 3 and 0 <= effects["map_at_6h"]["sign_accuracy"] <= 1
    assert "nRMSE 1 h" in _flat(bench.output) and "Wrote" in bench.output


@pytest.mark.slow
def test_bad_whatif_inputs_get_clear_errors(tmp_path: Path, micro_twin_model: Path, twin_cohort_dir: Path) -> None:
    base = ["whatif", "--model", str(micro_twin_model), "--cohort", str(twin_cohort_dir), "--samples", "2", "--horizon", "4",
            "--out", str(tmp_path / "out"), "--device", "cpu", "--no-match"]
    cases = [
        (["--stay", "4", "--at", "8", "--strategy", "no_such_strategy"], "unknown strategy 'no_such_strategy'"),
        (["--stay", "999", "--at", "8", "--strategy", "early_norepinephrine"], "stay 999 is not in the cohort"),
        (["--stay", "4", "--at", "1", "--strategy", "early_norepinephrine"], "must lie in 2..31"),
        (["--stay", "4", "--at", "50", "--strategy", "early_norepinephrine"], "its record covers hours 1..30"),
    ]
    for extra, message in cases:
        result = RUNNER.invoke(app, [*base, *extra])
        assert result.exit_code == 2 and message in _flat(result.output), result.output
    assert not (tmp_path / "out").exists()
    recorded = Cohort.load(twin_cohort_dir)
    Cohort(stays=recorded.stays, hourly=recorded.hourly, treatments=recorded.treatments.clear(),
           meta={**recorded.meta, "treatments_recorded": False}, catalog=recorded.catalog).save(tmp_path / "untreated")
    untreated = [*base[:4], str(tmp_path / "untreated"), *base[5:], "--stay", "4", "--at", "8", "--strategy", "early_norepinephrine"]
    result = RUNNER.invoke(app, untreated)
    assert result.exit_code == 2 and "recorded no treatments" in _flat(result.output)
    assert "leaves its other treatments to usual care" in _flat(result.output)
