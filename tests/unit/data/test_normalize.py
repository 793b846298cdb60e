"""Normaliser: training-split statistics, catalog fallbacks, transforms and JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from organsim.data import Cohort
from organsim.data.normalize import Normaliser


@pytest.fixture
def split_cohort() -> Cohort:
    """Stays 1-2 in train, 3 in test; HR 60..66 in train and 200 in test; MAP constant 80 in train."""
    stays = pl.DataFrame({
        "stay_id": [1, 2, 3], "sepsis": [False, True, False], "split": ["train", "train", "test"],
        "age": [50.0, 70.0, 90.0],
    })
    hourly = pl.DataFrame({
        "stay_id": [1, 1, 1, 2, 2, 2, 2, 3],
        "hour": [0, 1, 2, 0, 1, 2, 3, 0],
        "hr": [60.0, 61, 62, 63, 64, 65, 66, 200],
        "map": [80.0, 80, None, 80, None, None, None, 120],
    })
    treatments = pl.DataFrame({"stay_id": [1, 2], "hour": [0, 0], "iv_fluid_ml": [100.0, 300.0]})
    return Cohort.from_frames(stays, hourly, treatments, source="test")


def stat(normaliser: Normaliser, name: str, code: str) -> float:
    return float(getattr(normaliser, name)[normaliser.index([code])][0])


def test_fit_uses_the_training_split_only(split_cohort):
    n = Normaliser.fit(split_cohort)
    train_hr = np.arange(60.0, 67.0)
    assert stat(n, "mean", "hr") == pytest.approx(train_hr.mean())
    assert stat(n, "std", "hr") == pytest.approx(train_hr.std())  # population std (ddof=0)
    assert stat(n, "p01", "hr") == pytest.approx(np.percentile(train_hr, 1))
    assert stat(n, "p99", "hr") == pytest.approx(np.percentile(train_hr, 99))
    assert stat(n, "mean", "age") == pytest.approx(60.0)
    assert stat(n, "mean", "iv_fluid_ml") == pytest.approx(200.0)
    assert int(n.n_observed[n.index(["hr"])][0]) == 7
    everything = Normaliser.fit(split_cohort, split=None)
    assert stat(everything, "mean", "hr") == pytest.approx(np.append(train_hr, 200).mean())


def test_degenerate_codes_fall_back_to_the_catalog_range(split_cohort, catalog):
    n = Normaliser.fit(split_cohort)
    # MAP is constant in training: normal range [70, 105] -> mean 87.5, std 8.75
    assert stat(n, "mean", "map") == pytest.approx(87.5)
    assert stat(n, "std", "map") == pytest.approx(8.75)
    assert (stat(n, "p01", "map"), stat(n, "p99", "map")) == pytest.approx((70.0, 105.0))
    # never observed: lactate's normal range [0.5, 2.0]
    assert stat(n, "mean", "lactate") == pytest.approx(1.25)
    # FiO2's normal range has no width: the plausible range [0.21, 1.0] is used
    assert stat(n, "std", "fio2") == pytest.approx((1.0 - 0.21) / 4)
    assert int(n.n_observed[n.index(["map"])][0]) == 0
    assert np.all(n.std > 0) and np.all(n.p99 > n.p01)


def test_transforms_by_hand_and_inverse(split_cohort):
    n = Normaliser.fit(split_cohort)
    mean, std = stat(n, "mean", "hr"), stat(n, "std", "hr")
    x = np.array([[63.0, 87.5], [np.nan, 96.25]])
    z = n.zscore(x, ["hr", "map"])
    np.testing.assert_allclose(z, [[(63 - mean) / std, 0.0], [np.nan, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(n.unzscore(z, ["hr", "map"]), x, rtol=1e-6)
    np.testing.assert_allclose(n.minmax(np.array([70.0, 105.0, 87.5]).reshape(3, 1), ["map"]).ravel(), [0, 1, 0.5])
    with pytest.raises(KeyError, match="nope"):
        n.zscore(x, ["hr", "nope"])
    with pytest.raises(ValueError, match="last axis"):
        n.zscore(x, ["hr"])


def test_json_round_trip_and_malformed_dicts(split_cohort):
    n = Normaliser.fit(split_cohort)
    back = Normaliser.from_dict(json.loads(json.dumps(n.to_dict())))
    assert back.codes == n.codes
    for name in ("mean", "std", "p01", "p99", "n_observed"):
        np.testing.assert_array_equal(getattr(back, name), getattr(n, name))
    data = n.to_dict()
    with pytest.raises(ValueError, match="lacks"):
        Normaliser.from_dict({k: v for k, v in data.items() if k != "std"})
    with pytest.raises(ValueError, match="one entry per code"):
        Normaliser.from_dict({**data, "mean": data["mean"][:-1]})
    with pytest.raises(ValueError, match="std must be > 0"):
        Normaliser.from_dict({**data, "std": [0.0] * len(data["std"])})


def test_fit_on_a_missing_split_is_an_error(split_cohort):
    with pytest.raises(ValueError, match="validation"):
        Normaliser.fit(split_cohort, split="validation")
