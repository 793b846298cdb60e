"""The initial-state copula: shapes, determinism, conditioning on sepsis, no copied rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from organsim.data import Cohort
from organsim.synth import InitialStateModel


@pytest.fixture(scope="module")
def fitted(treated_cohort) -> InitialStateModel:
    train = treated_cohort.subset(split="train")
    return InitialStateModel(variables=train.catalog.variable_codes, initial_hours=2).fit(train)


def test_sample_shapes_and_columns(fitted, catalog):
    septic = np.array([True, False] * 10)
    drawn = fitted.sample(septic, np.random.default_rng(0), max_hours=30)
    assert drawn.height == 20
    assert drawn["sepsis"].to_list() == septic.tolist()
    assert drawn["n_hours"].min() >= 3 and drawn["n_hours"].max() <= 30
    assert drawn.filter(~pl.col("sepsis"))["onset_to_end"].null_count() == 10
    assert drawn.filter(pl.col("sepsis"))["onset_to_end"].null_count() == 0
    assert (drawn["onset_to_end"].drop_nulls() < drawn.filter(pl.col("sepsis"))["n_hours"]).all()
    assert set(drawn["unit"].drop_nulls().to_list()) <= {"MICU", "SICU", "other"}
    assert set(drawn["sex"].drop_nulls().to_list()) <= {0.0, 1.0}
    values = fitted.initial_values(drawn)
    assert values.shape == (20, 2, len(catalog.variable_codes)) and values.dtype == np.float32
    assert np.isfinite(values).any() and np.isnan(values).any()  # some charted, some not


def test_uncharted_sample_keeps_every_drawn_value(fitted, catalog):
    """charted=False: the same draws, with the value of every variable its stratum's training stays
    measured in that hour filled in (for the observation model to chart), the others still null."""
    septic = np.array([True, False] * 10)
    charted = fitted.initial_values(fitted.sample(septic, np.random.default_rng(3)))
    every = fitted.initial_values(fitted.sample(septic, np.random.default_rng(3), charted=False))
    measured = np.isfinite(charted)
    np.testing.assert_array_equal(every[measured], charted[measured])
    assert (~measured & np.isfinite(every)).any()
    for stratum in (True, False):
        observed = {c.name: not c.empty for c in fitted.strata_[stratum].columns}
        expected = np.array([[observed[fitted.value_column(k, v)] for v in catalog.variable_codes] for k in range(2)])
        assert expected.any() and not expected.all()
        np.testing.assert_array_equal(np.isfinite(every[septic == stratum]), np.broadcast_to(expected, every[septic == stratum].shape))


def test_same_seed_same_stays(fitted):
    septic = np.array([True] * 4 + [False] * 8)
    first = fitted.sample(septic, np.random.default_rng(5))
    assert first.equals(fitted.sample(septic, np.random.default_rng(5)))
    assert not first.equals(fitted.sample(septic, np.random.default_rng(6)))


def test_conditioning_on_sepsis_moves_the_stay_structure(catalog):
    """Septic stays are long and hypotensive, the others short and normotensive: draws follow their condition."""
    rng = np.random.default_rng(0)
    stays, hourly = [], []
    for stay in range(1, 121):
        septic = stay % 3 == 0
        n = int(rng.integers(40, 50) if septic else rng.integers(8, 14))
        stays.append({"stay_id": stay, "age": float(rng.uniform(20, 90)), "sex": int(stay % 2),
                      "sepsis": septic, "sepsis_onset_hour": n - 3 if septic else None})
        hourly.append(pl.DataFrame({"stay_id": [stay] * n, "hour": list(range(1, n + 1)),
                                    "map": rng.normal(58 if septic else 85, 3, n)}))
    cohort = Cohort.from_frames(pl.DataFrame(stays).with_columns(pl.col("sex").cast(pl.Int8)),
                                pl.concat(hourly).with_columns(pl.col("hour").cast(pl.Int32)), source="test", catalog=catalog)
    model = InitialStateModel(variables=("map", "hr"), initial_hours=1).fit(cohort)
    assert model.septic_fraction_ == pytest.approx(40 / 120)
    drawn = model.sample(np.array([True] * 50 + [False] * 50), np.random.default_rng(1))
    septic, other = drawn.filter(pl.col("sepsis")), drawn.filter(~pl.col("sepsis"))
    assert septic["n_hours"].min() >= 40 and other["n_hours"].max() <= 13
    assert septic["h0_map"].mean() < 65 < other["h0_map"].mean()
    assert septic["onset_to_end"].to_list() == [3] * 50  # last hour - onset hour in every septic training stay
    assert drawn["h0_hr"].null_count() == 100  # never charted in training, never drawn


def test_continuous_values_are_not_copied(catalog):
    """Interpolated quantiles: a drawn heart rate equals a training value only at the ends of the range (the clipped tails)."""
    rng = np.random.default_rng(3)
    n = 150
    stays = pl.DataFrame({"stay_id": np.arange(1, n + 1), "sepsis": np.zeros(n, dtype=bool)})
    hourly = pl.DataFrame({"stay_id": np.repeat(np.arange(1, n + 1), 3), "hour": np.tile([1, 2, 3], n),
                           "hr": rng.normal(90, 15, 3 * n)}).with_columns(pl.col("hour").cast(pl.Int32))
    cohort = Cohort.from_frames(stays, hourly, source="test", catalog=catalog)
    model = InitialStateModel(variables=("hr",), initial_hours=2).fit(cohort)
    drawn = model.sample(np.zeros(400, dtype=bool), np.random.default_rng(4))
    for column in ("h0_hr", "h1_hr"):
        real = model.table(cohort)[column].to_numpy()
        values = drawn[column].to_numpy()
        copied = np.isin(values, real) & (values > real.min()) & (values < real.max())
        assert not copied.any(), column


def test_fit_needs_stays(catalog):
    empty = Cohort.from_frames(pl.DataFrame({"stay_id": [1], "sepsis": [False]}),
                               pl.DataFrame({"stay_id": [1], "hour": [1]}).with_columns(pl.col("hour").cast(pl.Int32)),
                               source="test", catalog=catalog)
    with pytest.raises(ValueError, match="at least 3 stays"):
        InitialStateModel(variables=("map",), initial_hours=1).fit(empty)
