"""The outcome summariser on engine futures: several similar patients stand in for K samples."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from organsim.counterfactual import EngineOracle, Futures, load_strategy, summarise_futures
from organsim.counterfactual.outcomes import futures_quantiles, quantile_bands
from organsim.data import Cohort
from organsim.scores import score_trajectories
from organsim.twin.calibration import HORIZON_BUCKETS, BandCalibration
from organsim.utils.arrays import nan_quantiles


def _stacked(futures: list[Futures]) -> Futures:
    """The futures of several stays (decided from hour 1, so without history) as the samples of one."""
    first = futures[0]
    samples = pl.concat([f.samples.with_columns(pl.lit(k, dtype=pl.Int32).alias("sample")) for k, f in enumerate(futures)])
    return Futures(stay_id=first.stay_id, decision_hour=1, horizon=first.horizon, strategy=first.strategy, simulator=first.simulator,
                   variables=first.variables, treatment_codes=first.treatment_codes, history=first.history, samples=samples,
                   death_hour=np.concatenate([f.death_hour for f in futures]), stay=first.stay)


def test_bands_scores_events_and_deaths_of_engine_futures(engine_cohort: Cohort, oracle: EngineOracle, septic_alive: list[int]) -> None:
    ids = septic_alive[:8]
    # decision hour 1: the whole stay follows the strategy and no sample has a history of its own
    per_stay = oracle.simulate(engine_cohort, ids, 1, load_strategy("early_norepinephrine"), horizon=48)
    dying = engine_cohort.stays.filter(pl.col("death"))["stay_id"].to_list()[:2]
    per_stay += oracle.simulate(engine_cohort, dying, 1, load_strategy("early_norepinephrine"), horizon=48)
    futures = _stacked(per_stay)
    summary, = summarise_futures([futures], horizons=(24, 48))
    k = futures.n_samples

    values = futures.values(futures.variables)
    expected = np.nanquantile(values, 0.5, axis=0)  # (H, V); the truth has every variable every hour
    bands = summary.bands.sort("hour", "variable")
    mapped = bands.filter(pl.col("variable") == "map")
    np.testing.assert_allclose(mapped["q50"].to_numpy(), expected[:, futures.variables.index("map")])
    assert mapped["n"].to_list() == np.isfinite(values[:, :, futures.variables.index("map")]).sum(axis=0).tolist()

    # independent scores: each stay scored on its own as a cohort would be
    hourly = pl.concat([f.samples.with_columns(pl.lit(f.stay_id, dtype=pl.Int64).alias("stay_id")) for f in per_stay])
    scores = score_trajectories(hourly.select("stay_id", "hour", *futures.variables),
                                hourly.select("stay_id", "hour", *futures.treatment_codes),
                                pl.DataFrame({"stay_id": [f.stay_id for f in per_stay], "age": [60.0] * k}))
    at_24 = {s: v for s, v in scores.hourly.filter(pl.col("hour") == 24).select("stay_id", "sofa_24h").iter_rows()}
    expected_sofa = [None if f.death_hour[0] <= 24 else float(at_24[f.stay_id]) for f in per_stay]
    assert summary.sample_outcomes["sofa_at_24h"].to_list() == expected_sofa
    assert summary.sample_outcomes["died"].to_list() == [bool(np.isfinite(f.death_hour[0])) for f in per_stay]
    assert any(summary.sample_outcomes["died"]) and not all(summary.sample_outcomes["died"])

    events = {row["event"]: row for row in summary.events.iter_rows(named=True)}
    with_hypotension = set(scores.events.filter((pl.col("event") == "hypotension") & (pl.col("onset_hour") <= 48))["stay_id"].to_list())
    assert events["hypotension"]["probability"] == pytest.approx(len(with_hypotension) / k)
    assert events["death"]["probability"] == pytest.approx(np.isfinite(futures.death_hour).mean())
    sofa_24 = summary.scores.filter((pl.col("score") == "sofa") & (pl.col("horizon_hours") == 24)).row(0, named=True)
    present = [v for v in expected_sofa if v is not None]
    assert sofa_24["n"] == len(present) and sofa_24["mean"] == pytest.approx(np.mean(present))
    assert summary.consulted is None  # the oracle has no organ agents


def test_one_call_for_many_futures_equals_one_call_each(engine_cohort: Cohort, oracle: EngineOracle, septic_alive: list[int]) -> None:
    ids = septic_alive[8:11]
    futures = oracle.simulate(engine_cohort, ids, 12, load_strategy("liberal_fluids"), horizon=30)
    together = summarise_futures(futures)
    for future, summary in zip(futures, together, strict=True):
        alone, = summarise_futures([future])
        assert summary.sample_outcomes.equals(alone.sample_outcomes)
        assert summary.events.equals(alone.events) and summary.bands.equals(alone.bands)
        assert summary.stay_id == future.stay_id and summary.scores["horizon_hours"].to_list() == [24, 48, 72, 24, 48, 72]
        assert summary.scores.filter(pl.col("horizon_hours") > 30)["n"].to_list() == [0] * 4  # beyond the horizon: no value


def test_bands_of_futures_with_a_band_calibration_are_the_calibrated_ones(
    engine_cohort: Cohort, oracle: EngineOracle, septic_alive: list[int]
) -> None:
    per_stay = oracle.simulate(engine_cohort, septic_alive[:6], 1, load_strategy("early_norepinephrine"), horizon=24)
    raw = _stacked(per_stay)
    variables = tuple(raw.variables)
    scales = np.tile(np.linspace(1.5, 2.5, len(variables)), (len(HORIZON_BUCKETS), 1))
    calibration = BandCalibration(variables=variables, band=(0.05, 0.95), scales=scales, floor=np.zeros(len(variables)),
                                  n_scores=np.zeros_like(scales), coverage_before=0.8, meta={})
    calibrated = dataclasses.replace(raw, band_calibration=calibration)
    values = raw.values(variables)
    low, median, high = nan_quantiles(values, (0.05, 0.5, 0.95))
    lower, upper = calibration.bands(values, variables)
    np.testing.assert_allclose(futures_quantiles(calibrated, (0.05, 0.95)), np.stack([lower, upper]))
    np.testing.assert_allclose(futures_quantiles(raw, (0.05, 0.95)), np.stack([low, high]))
    bands = quantile_bands(calibrated).filter(pl.col("variable") == "map").sort("hour")
    j = variables.index("map")
    np.testing.assert_allclose(bands["q95"].to_numpy(), median[:, j] + scales[0, j] * (high[:, j] - median[:, j]))
    np.testing.assert_allclose(bands["q50"].to_numpy(), median[:, j])  # the median stays where the samples put it
