"""What makes synthetic stays harder to tell from real ones: MAP derived from SBP and DBP as in the
training hours, panels of labs charted together, and the twin's bin values spread within their bins."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from synth_fakes import FakeTwin

from organsim.data import Cohort
from organsim.data.tokenizers import BinTokenizer, ChangeTokenizer
from organsim.synth import CohortSynthesizer, ObservationModel, ObservationState, SynthesisConfig
from organsim.synth.consistency import PressureConsistency, pressure_residual
from organsim.synth.dequantize import BinSpreader


def _cohort(catalog, columns: dict[str, np.ndarray], n_stays: int, n_hours: int) -> Cohort:
    hourly = pl.DataFrame({"stay_id": np.repeat(np.arange(1, n_stays + 1), n_hours),
                           "hour": np.tile(np.arange(1, n_hours + 1), n_stays), **columns},
                          nan_to_null=True).with_columns(pl.col("hour").cast(pl.Int32))
    stays = pl.DataFrame({"stay_id": np.arange(1, n_stays + 1), "sepsis": np.zeros(n_stays, dtype=bool)})
    return Cohort.from_frames(stays, hourly, source="test", catalog=catalog)


# ------------------------------------------------------------------------------------------ pressures
@pytest.fixture(scope="module")
def pressure_cohort(catalog) -> Cohort:
    """MAP = (SBP + 2 DBP) / 3 + a residual of -2..2 mmHg that stays put for 6 hours at a time."""
    n_stays, n_hours = 20, 36
    rng = np.random.default_rng(0)
    sbp = rng.uniform(100, 140, n_stays * n_hours).round()
    dbp = rng.uniform(50, 80, n_stays * n_hours).round()
    residual = np.repeat(rng.integers(-2, 3, n_stays * n_hours // 6), 6).astype(float)
    return _cohort(catalog, {"sbp": sbp, "dbp": dbp, "map": (sbp + 2 * dbp) / 3 + residual}, n_stays, n_hours)


def test_pressure_residual_is_learned_with_its_persistence(pressure_cohort):
    model = PressureConsistency.for_variables(("hr", "sbp", "dbp", "map")).fit(pressure_cohort)
    assert model.columns == (1, 2, 3)
    assert model.quantiles_.min() == pytest.approx(-2, abs=1e-4) and model.quantiles_.max() == pytest.approx(2, abs=1e-4)
    # the residual persists over hours: five in six hours repeat the one before, whatever its level
    rng = np.random.default_rng(0)
    for level in (-2.0, 0.0, 2.0):
        following = model.step(np.full(600, level), rng)
        assert 0.7 < np.mean(np.abs(following - level) < 0.5) < 0.95
    assert PressureConsistency.for_variables(("hr", "sbp")) is None


def test_map_is_derived_from_sbp_and_dbp(pressure_cohort):
    model = PressureConsistency.for_variables(("sbp", "dbp", "map")).fit(pressure_cohort)
    rng = np.random.default_rng(1)
    n = 500
    values = np.column_stack([rng.uniform(100, 140, n), rng.uniform(50, 80, n), rng.uniform(60, 110, n)]).astype(np.float32)
    values[:10, 0] = np.nan  # no SBP this hour: MAP left as simulated
    residuals = model.start(n, rng)
    out, residuals = model.apply(values, residuals, rng)
    residual = pressure_residual(*out[10:].astype(np.float64).T)
    assert np.abs(residual).max() <= 2 + 1e-4  # the simulated MAP was up to 40 mmHg off
    assert len(np.unique(np.rint(residual))) >= 4  # drawn from the training residuals, not one value
    np.testing.assert_array_equal(out[:10], values[:10])
    np.testing.assert_array_equal(out[:, :2], values[:, :2])  # SBP and DBP as simulated
    assert ((out[10:, 2] >= out[10:, 1]) & (out[10:, 2] <= out[10:, 0])).all()
    # the next hour keeps most stays' residual, unlike independent draws
    again, _ = model.apply(values, residuals, rng)
    same = np.isclose(pressure_residual(*again[10:].astype(np.float64).T), residual, atol=0.5).mean()
    assert same > 0.4


def test_generated_hours_carry_the_training_residual(pressure_cohort, catalog):
    """The fake twin lets MAP drift 1 % an hour while SBP and DBP stay: the generator re-derives it."""
    train = pressure_cohort.split((0.6, 0.2, 0.2), seed=0).subset(split="train")
    synthesizer = CohortSynthesizer.fit(train, initial_hours=2)
    result = synthesizer.generate(FakeTwin(catalog), SynthesisConfig(patients=12, max_hours=30, seed=3, septic_fraction=0.0))
    hourly = result.cohort.hourly.drop_nulls(["sbp", "dbp", "map"])
    residual = pressure_residual(*(hourly[c].to_numpy().astype(np.float64) for c in ("sbp", "dbp", "map")))
    assert hourly.height > 100 and np.abs(residual).max() <= 2.5  # 2 mmHg, and MAP charted in whole mmHg


# ------------------------------------------------------------------------------------------ panels
@pytest.fixture(scope="module")
def panel_cohort(catalog) -> Cohort:
    """HR hourly; creatinine and BUN always charted together (a panel), at random hours (p = 0.2)."""
    n_stays, n_hours = 30, 40
    rng = np.random.default_rng(0)
    panel = rng.random(n_stays * n_hours) < 0.2
    return _cohort(catalog, {"hr": np.full(n_stays * n_hours, 80.0), "creatinine": np.where(panel, 1.0, np.nan),
                             "bun": np.where(panel, 20.0, np.nan)}, n_stays, n_hours)


def test_panel_is_charted_together(panel_cohort, catalog):
    variables = ("hr", "creatinine", "bun")
    model = ObservationModel.for_catalog(variables, catalog).fit(panel_cohort)
    rng = np.random.default_rng(1)
    n, length = 200, 40
    state = ObservationState(np.full((n, 3), 0.0), np.tile([80.0, 1.0, 20.0], (n, 1)), model.draw_styles(n, rng),
                             first_hour=np.ones(n))
    simulated = np.tile(np.array([80.0, 1.0, 20.0], dtype=np.float32), (n, length, 1))
    charted = np.isfinite(model.mask(simulated, np.tile(np.arange(1, length + 1), (n, 1)), state, rng))
    assert charted[..., 1].mean() == pytest.approx(0.2, abs=0.03)
    together = (charted[..., 1] & charted[..., 2]).sum() / charted[..., 1].sum()
    assert together > 0.9  # drawn independently given HR, they would meet in about 20 % of hours


def test_opening_hours_are_charted_by_the_observation_model(catalog):
    """Half the training stays chart creatinine with BUN (a panel) in about a third of their hours, from
    the first on; the others never chart either. The generated stays' first hours (drawn by the
    initial-state copula) chart the panel whole, and only in stays whose charting style charts it
    later too: the copula's own indicators drew each lab apart and regardless of the stay's style.
    (Enough stays that the style trees' leaves of 20 stays can tell the two kinds apart.)"""
    n_stays, n_hours = 120, 30
    stay = np.repeat(np.arange(1, n_stays + 1), n_hours)
    panel = (stay % 2 == 0) & (np.random.default_rng(2).random(n_stays * n_hours) < 0.3)
    cohort = _cohort(catalog, {"hr": np.full(n_stays * n_hours, 80.0), "creatinine": np.where(panel, 1.0, np.nan),
                               "bun": np.where(panel, 20.0, np.nan)}, n_stays, n_hours)
    train = cohort.split((0.8, 0.1, 0.1), seed=0).subset(split="train")
    synthesizer = CohortSynthesizer.fit(train, initial_hours=2)
    result = synthesizer.generate(FakeTwin(catalog), SynthesisConfig(patients=60, max_hours=30, seed=1, septic_fraction=0.0))
    hourly = result.cohort.hourly.sort("stay_id", "hour").with_columns(pl.int_range(pl.len()).over("stay_id").alias("index"))
    opening = hourly.filter(pl.col("index") < 2)
    creatinine, bun = (opening[c].is_not_null().to_numpy() for c in ("creatinine", "bun"))
    assert creatinine.sum() >= 5  # the panel is charted in some first hours
    np.testing.assert_array_equal(creatinine, bun)
    later = hourly.filter(pl.col("index") >= 2).group_by("stay_id").agg(pl.col("creatinine").is_not_null().any().alias("later"))
    first = opening.group_by("stay_id").agg(pl.col("creatinine").is_not_null().any().alias("first")).join(later, on="stay_id")
    assert first.filter(pl.col("first"))["later"].all()  # no stay charts the panel in its first hours only


# ------------------------------------------------------------------------------------------ bin spreading
@pytest.fixture(scope="module")
def spreader() -> BinSpreader:
    """Two value bins of creatinine ([0, 1), [1, 20]) over training values 0.10 .. 0.99 and 1.0 .. 5.0;
    change bins (-inf, -1), [-1, 0), [0, 1), [1, inf) of scale 0.5 over training changes: 60 repeats
    (0), 40 of 0.05 .. 0.45 and 20 of 0.6 .. 1.0 mg/dL (scaled: 0, 0.1 .. 0.9, 1.2 .. 2)."""
    tokenizer = BinTokenizer(variables=("creatinine",), edges=(np.array([0.0, 1.0, 20.0]),),
                             centers=(np.array([0.5, 3.0]),), method="quantile", n_bins=2)
    changes = ChangeTokenizer(variables=("creatinine",), scales=np.array([0.5]), edges=(np.array([-1.0, 0.0, 1.0]),),
                              centers=(np.array([-1.5, -0.5, 0.5, 1.5]),))
    training = {"creatinine": np.sort(np.r_[np.linspace(0.1, 0.99, 90), np.linspace(1.0, 5.0, 40)])}
    training_changes = {"creatinine": np.r_[np.zeros(60), np.linspace(0.05, 0.45, 40), np.linspace(0.6, 1.0, 20)]}
    return BinSpreader.fit(tokenizer, changes, training, training_changes, ("hr", "creatinine"))


def test_value_bins_are_spread_over_their_training_values(spreader):
    n = 400
    values = np.tile(np.array([70.0, 0.5], dtype=np.float32), (n, 1))
    values[n // 2 :, 1] = 3.0
    spread = spreader.spread(values, np.full((n, 2), np.nan), np.random.default_rng(0))
    low, high = spread[: n // 2, 1], spread[n // 2 :, 1]
    assert low.min() >= 0.1 and low.max() <= 0.99 and high.min() >= 1.0 and high.max() <= 5.0
    assert len(np.unique(low)) > 100 and np.median(high) == pytest.approx(3.0, abs=0.5)
    np.testing.assert_array_equal(spread[:, 0], 70.0)  # no bins for heart rate: unchanged


def test_the_last_value_bin_holds_the_training_values_at_its_top_edge():
    # a saturating variable: a third of the training SpO2 values read exactly 100, the top edge
    tokenizer = BinTokenizer(variables=("spo2",), edges=(np.array([90.0, 98.0, 100.0]),), centers=(np.array([95.0, 99.3]),),
                             method="quantile", n_bins=2)
    changes = ChangeTokenizer(variables=("spo2",), scales=np.array([1.0]), edges=(np.array([0.0]),), centers=(np.array([-1.0, 1.0]),))
    training = {"spo2": np.sort(np.r_[np.linspace(90.0, 97.5, 40), np.repeat([98.0, 99.0], 20), np.full(40, 100.0)])}
    spo2 = BinSpreader.fit(tokenizer, changes, training, {"spo2": np.zeros(10)}, ("spo2",))
    drawn = spo2.spread(np.full((500, 1), 99.3, dtype=np.float32), np.full((500, 1), np.nan), np.random.default_rng(0))
    assert drawn.min() >= 98.0 and drawn.max() == 100.0
    assert (drawn == 100.0).mean() == pytest.approx(0.5, abs=0.1)  # 40 of the bin's 80 values


def test_change_bins_are_spread_over_the_training_changes(spreader):
    n = 300
    last = np.tile([np.nan, 2.0], (n, 1))
    values = np.tile(np.array([np.nan, 2.25], dtype=np.float32), (n, 1))  # last + 0.5 * 0.5: the bin [0, 1)
    values[:100, 1] = 2.0 + 0.5 * 1.5  # the open upper bin
    values[-5:, 1] = np.nan
    spread = spreader.spread(values, last, np.random.default_rng(0))
    inner, outer = spread[100:-5, 1], spread[:100, 1]
    assert inner.min() >= 2.0 and inner.max() <= 2.45 + 1e-6
    assert (inner == 2.0).mean() == pytest.approx(0.6, abs=0.1)  # repeats stay repeats, as often as in training
    assert len(np.unique(inner[inner > 2.0])) > 50
    assert outer.min() >= 2.6 - 1e-6 and outer.max() <= 3.0 + 1e-6 and len(np.unique(outer)) > 50
    assert np.isnan(spread[-5:, 1]).all() and np.isnan(spread[:, 0]).all()
    np.testing.assert_array_equal(spread, spreader.spread(values, last, np.random.default_rng(0)))


# ------------------------------------------------------------------------------------------ first charting
def test_first_lab_comes_when_the_training_stays_draw_it(catalog):
    """Every training stay draws lactate first in its third hour (then daily): so do synthetic stays.
    One "never charted yet" rate for all hours spread the first draw over the stay instead."""
    n_stays, n_hours = 30, 30
    stay_hour = np.tile(np.arange(1, n_hours + 1), n_stays)
    cohort = _cohort(catalog, {"hr": np.full(n_stays * n_hours, 80.0),
                               "lactate": np.where(stay_hour % 24 == 3, 1.5, np.nan)}, n_stays, n_hours)
    model = ObservationModel.for_catalog(("hr", "lactate"), catalog).fit(cohort)
    rng = np.random.default_rng(0)
    n, length = 300, 12
    hours = np.tile(np.arange(101, 101 + length), (n, 1))  # stays starting at ICU hour 101
    state = ObservationState.from_history(np.full((n, 1, 2), np.nan), hours[:, :1], model.draw_styles(n, rng))
    simulated = np.tile(np.array([80.0, 1.5], dtype=np.float32), (n, length - 1, 1))
    charted = np.isfinite(model.mask(simulated, hours[:, 1:], state, rng))[..., 1]  # stay hours 2 .. 12
    first = np.argmax(charted, axis=1) + 2
    assert (charted.any(axis=1) & (first == 3)).mean() > 0.7


def test_a_few_hourly_charted_stays_stay_a_style_of_their_own(catalog):
    """One stay in seven charts temperature every hour, the others in a quarter of their hours: synthetic
    stays are one or the other, not a mix (terciles put both kinds in the top style)."""
    n_stays, n_hours = 70, 36
    stay = np.repeat(np.arange(1, n_stays + 1), n_hours)
    sometimes = np.random.default_rng(5).random(n_stays * n_hours) < 0.25
    cohort = _cohort(catalog, {"hr": np.full(n_stays * n_hours, 80.0),
                               "temperature": np.where((stay % 7 == 0) | sometimes, 37.0, np.nan)}, n_stays, n_hours)
    model = ObservationModel.for_catalog(("hr", "temperature"), catalog).fit(cohort)
    rng = np.random.default_rng(0)
    n, length = 700, 36
    state = ObservationState(np.full((n, 2), 0.0), np.tile([80.0, 37.0], (n, 1)), model.draw_styles(n, rng),
                             first_hour=np.ones(n))
    simulated = np.tile(np.array([80.0, 37.0], dtype=np.float32), (n, length, 1))
    shares = np.isfinite(model.mask(simulated, np.tile(np.arange(1, length + 1), (n, 1)), state, rng))[..., 1].mean(axis=1)
    assert (shares > 0.8).mean() == pytest.approx(1 / 7, abs=0.05)
    assert ((shares > 0.4) & (shares < 0.8)).mean() < 0.1  # the training stays: 4.3 %


def test_septic_stays_chart_as_septic_training_stays_do(catalog):
    """Septic training stays chart lactate hourly, the others never: so do synthetic stays of each stratum."""
    n_stays, n_hours = 40, 24
    stay = np.repeat(np.arange(1, n_stays + 1), n_hours)
    hourly = pl.DataFrame({"stay_id": stay, "hour": np.tile(np.arange(1, n_hours + 1), n_stays), "hr": 80.0,
                           "lactate": np.where(stay <= 10, 2.0, np.nan)},
                          nan_to_null=True).with_columns(pl.col("hour").cast(pl.Int32))
    stays = pl.DataFrame({"stay_id": np.arange(1, n_stays + 1), "sepsis": np.arange(1, n_stays + 1) <= 10})
    model = ObservationModel.for_catalog(("hr", "lactate"), catalog).fit(
        Cohort.from_frames(stays, hourly, source="test", catalog=catalog))
    rng = np.random.default_rng(0)
    n, length = 400, 24
    septic = np.arange(n) < n // 2
    state = ObservationState(np.full((n, 2), np.nan), np.full((n, 2), np.nan), model.draw_styles(n, rng, septic),
                             first_hour=np.ones(n))  # new stays, nothing charted yet
    simulated = np.tile(np.array([80.0, 2.0], dtype=np.float32), (n, length, 1))
    shares = np.isfinite(model.mask(simulated, np.tile(np.arange(1, length + 1), (n, 1)), state, rng))[..., 1].mean(axis=1)
    assert shares[septic].mean() > 0.6 and shares[~septic].mean() < 0.1  # pooled styles: a quarter of each stratum
