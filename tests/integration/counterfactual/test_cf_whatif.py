"""What-if runs, matched comparisons and virtual trials on an engine cohort, with the oracle as simulator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from organsim.counterfactual import (
    COURSE_FEATURES,
    BehaviourPolicy,
    EngineOracle,
    load_strategy,
    matched_comparison,
    summarise_futures,
    virtual_trial,
    what_if,
)
from organsim.data import Cohort
from organsim.scores import score_cohort


def test_matched_stays_had_a_similar_course_and_their_outcomes_are_the_record(
    engine_cohort: Cohort, oracle: EngineOracle, septic_alive: list[int]
) -> None:
    stay = septic_alive[0]
    futures, = oracle.simulate(engine_cohort, [stay], 8, load_strategy("observed_care"), horizon=40)
    summary, = summarise_futures([futures])
    scores = score_cohort(engine_cohort).hourly
    matched = matched_comparison(engine_cohort, futures, summary, k=8, course_caliper=0.75, cohort_scores=scores, n_bootstrap=300)
    matches = matched.matches
    assert 0 < matches.height <= 8 and stay not in matches["stay_id"].to_list()
    assert matches["stay_id"].n_unique() == matches.height
    assert matches["state_distance"].is_sorted() and (matches["course_distance"] <= 0.75).all()
    assert matched.n_candidates >= matches.height and set(matched.course) == set(COURSE_FEATURES)
    sofa_24 = matched.comparison.filter((pl.col("outcome") == "sofa") & (pl.col("horizon_hours") == 24)).row(0, named=True)
    outcome_rows = matches.select("stay_id", (pl.col("hour") + 23).alias("hour")).join(scores, on=["stay_id", "hour"])
    last = engine_cohort.hourly.group_by("stay_id").agg(pl.col("hour").max().alias("last"))
    alive = (outcome_rows.join(last, on="stay_id").join(engine_cohort.stays.select("stay_id", "death"), on="stay_id")
             .filter(~(pl.col("death") & (pl.col("last") <= pl.col("hour")))))  # a stay that died by then has no score
    assert sofa_24["n_matched"] == alive.height and sofa_24["matched_mean"] == pytest.approx(alive["sofa_24h"].cast(pl.Float64).mean())
    assert sofa_24["simulated_mean"] == summary.sample_outcomes["sofa_at_24h"][0]
    assert sofa_24["difference"] == pytest.approx(sofa_24["simulated_mean"] - sofa_24["matched_mean"])
    assert sofa_24["ci_low"] <= sofa_24["difference"] <= sofa_24["ci_high"]
    again = matched_comparison(engine_cohort, futures, summary, k=8, course_caliper=0.75, cohort_scores=scores, n_bootstrap=300)
    assert again.comparison.equals(matched.comparison)


def test_what_if_answers_per_strategy_and_writes_one_directory(
    tmp_path: Path, engine_cohort: Cohort, oracle: EngineOracle, behaviour: BehaviourPolicy, septic_alive: list[int]
) -> None:
    strategies = [load_strategy("liberal_fluids"), load_strategy("restrictive_fluids_early_norepinephrine")]
    result = what_if(oracle, engine_cohort, septic_alive[1], 10, strategies, horizon=36, n_samples=1, behaviour=behaviour,
                     match_cohort=engine_cohort, match_k=5)
    assert list(result.outcomes) == ["liberal_fluids", "restrictive_fluids_early_norepinephrine"]
    liberal = result.outcomes["liberal_fluids"]
    fluids = liberal.futures.values(["iv_fluid_ml"])[0, :, 0]
    assert fluids[0] == fluids[1] == 1000.0  # the 2 L bolus of the first two hours
    assert liberal.overlap is not None and liberal.overlap.actions["treatment"].unique().to_list() == ["iv_fluid_ml"]
    assert liberal.matched is not None and liberal.matched.matches.height <= 5
    out = result.write(tmp_path / "whatif")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["whatif.json", "trajectories.parquet", "bands.parquet", "sample_outcomes.parquet", "scores.parquet",
                            "events.parquet", "overlap_actions.parquet", "matched.parquet", "matched_stays.parquet"])
    overview = json.loads((out / "whatif.json").read_text())
    assert overview["stay_id"] == septic_alive[1] and set(overview["strategies"]) == set(result.outcomes)
    assert overview["strategies"]["liberal_fluids"]["overlap"]["in_support"] == liberal.overlap.in_support
    trajectories = pl.read_parquet(out / "trajectories.parquet")
    assert trajectories.group_by("strategy").len().sort("strategy")["len"].to_list() == [36, 36]
    with pytest.raises(FileExistsError):
        result.write(out)
    assert (out / "whatif.json").read_text() == json.dumps(overview, indent=2, default=str) + "\n"


def test_a_virtual_trial_estimates_the_effect_with_intervals(engine_cohort: Cohort, oracle: EngineOracle, septic_alive: list[int]) -> None:
    cases = pl.DataFrame({"stay_id": septic_alive[:16], "decision_hour": [6] * 16})
    trial = virtual_trial(oracle, engine_cohort, cases, load_strategy("liberal_fluids"), load_strategy("restrictive_fluids"),
                          horizon=40, n_samples=1, n_bootstrap=500, seed=3)
    effects = {row["outcome"]: row for row in trial.effects.iter_rows(named=True)}
    sofa = effects["sofa_at_24h"]
    a = np.array([s.sample_outcomes["sofa_at_24h"][0] for s in trial.arm_a], dtype=float)
    b = np.array([s.sample_outcomes["sofa_at_24h"][0] for s in trial.arm_b], dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    assert sofa["n_stays"] == keep.sum() and sofa["effect"] == pytest.approx((a - b)[keep].mean())
    assert sofa["ci_low"] <= sofa["effect"] <= sofa["ci_high"]
    assert effects["sofa_at_48h"]["n_stays"] == 0  # a 40-hour horizon does not reach 48 h
    again = virtual_trial(oracle, engine_cohort, cases, load_strategy("liberal_fluids"), load_strategy("restrictive_fluids"),
                          horizon=40, n_samples=1, n_bootstrap=500, seed=3)
    assert again.effects.equals(trial.effects)
