"""The real stays' mean course (organsim.synth.drift.DriftProfile) and the generator's drift control
that steers a synthetic cohort along it."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from organsim.synth.drift import MAX_CORRECTION, MIN_STAYS, SMOOTH_HOURS, DriftProfile
from organsim.synth.generate import DRIFT_MIN_STAYS, _drift_correction

INNER = slice(SMOOTH_HOURS // 2, None)  # a centred mean of a line is the line, away from the ends


def _stays(first_id: int, count: int, hours: int, slope: float, start: float = 80.0, first_hour: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``count`` stays of ``hours`` hours whose heart rate is ``start + slope * t`` (t from the first row)."""
    ids = np.repeat(np.arange(first_id, first_id + count), hours)
    t = np.tile(np.arange(hours), count)
    hourly = pl.DataFrame({"stay_id": ids, "hour": t + first_hour, "hr": start + slope * t.astype(float)})
    return hourly, pl.DataFrame({"stay_id": np.arange(first_id, first_id + count), "n_hours": np.full(count, hours)})


def test_the_course_is_each_band_s_mean_change_from_the_first_value_carried_on_past_its_stays() -> None:
    """Short stays (10 h) rise by 1 an hour, long ones (40 h, starting at ICU hour 3) fall by 0.5: two
    length bands with their own course; past the last hour with MIN_STAYS stays the course is carried on."""
    short, short_n = _stays(0, MIN_STAYS, 10, 1.0)
    long, long_n = _stays(1000, MIN_STAYS, 40, -0.5, first_hour=3)
    profile = DriftProfile.fit(pl.concat([short, long]), pl.concat([short_n, long_n]), ["hr"], bands=2, levels=1)
    assert profile.course.shape == (2, 1, 40, 1)
    np.testing.assert_array_equal(profile.band_of(np.array([5, 10, 20, 40, 100])), [0, 0, 0, 1, 1])
    np.testing.assert_allclose(profile.course[0, 0, INNER, 0][: 10 - SMOOTH_HOURS + 1], np.arange(10)[INNER][: 10 - SMOOTH_HOURS + 1])
    np.testing.assert_allclose(profile.course[1, 0, INNER, 0][:30], -0.5 * np.arange(40)[INNER][:30])
    np.testing.assert_allclose(profile.course[0, 0, 10:, 0], profile.course[0, 0, 9, 0])  # carried on
    levels = np.zeros((2, 1), dtype=np.int64)
    np.testing.assert_allclose(profile.target(np.array([0, 1]), levels, 500)[:, 0], profile.course[:, 0, -1, 0])
    assert set(profile.summary()["course"]["hr"]) == {"6h", "12h", "24h"}


def test_stays_admitted_high_and_low_have_courses_of_their_own() -> None:
    """Stays starting at 120 fall by 1 an hour, stays starting at 60 rise by 1: two level bands."""
    high, high_n = _stays(0, MIN_STAYS, 12, -1.0, start=120.0)
    low, low_n = _stays(500, MIN_STAYS, 12, 1.0, start=60.0)
    profile = DriftProfile.fit(pl.concat([high, low]), pl.concat([high_n, low_n]), ["hr"], bands=1, levels=2)
    assert profile.level_edges[:, 0].tolist() == [60.0, 90.0, 120.0]
    np.testing.assert_array_equal(profile.level_of(np.array([[55.0], [70.0], [125.0], [np.nan]]))[:, 0], [0, 0, 1, 0])
    target = profile.target(np.zeros(2, dtype=np.int64), np.array([[0], [1]]), 6)[:, 0]
    np.testing.assert_allclose(target, [6.0, -6.0])
    chosen = profile.select(["hr"])
    np.testing.assert_array_equal(chosen.course, profile.course)


def test_a_band_hour_with_too_few_stays_has_no_course_of_its_own() -> None:
    few, few_n = _stays(0, MIN_STAYS - 1, 10, 1.0)
    profile = DriftProfile.fit(few, few_n, ["hr"], bands=1, levels=1)
    assert np.isnan(profile.course).all()
    # an uncharted hour in the middle is carried over from the one before
    hourly, n_hours = _stays(0, MIN_STAYS, 12, 2.0)
    hourly = hourly.with_columns(hr=pl.when(pl.col("hour") == 6).then(None).otherwise(pl.col("hr")))
    profile = DriftProfile.fit(hourly, n_hours, ["hr"], bands=1, levels=1)
    assert profile.course[0, 0, 6, 0] == profile.course[0, 0, 5, 0]


@pytest.mark.parametrize("bands", [1, 3])
def test_every_length_falls_in_a_band(bands: int) -> None:
    hourly, n_hours = _stays(0, 3 * MIN_STAYS, 6, 0.0)
    profile = DriftProfile.fit(hourly, n_hours, ["hr"], bands=bands)
    assert set(profile.band_of(np.array([0, 6, 1000])).tolist()) <= set(range(bands))


def test_the_correction_leans_each_level_band_toward_its_course_in_units_of_the_hourly_change() -> None:
    """A flat course at +4 for stays admitted low, -4 for those admitted high: when the low stays' last
    values sit 2 above their first and the high ones' 6 below, the low band leans up by
    gain * (4 - 2) / sigma and the high one by gain * (-4 + 6) / sigma, up too; a band with fewer
    than DRIFT_MIN_STAYS stays with a value does not lean."""
    profile = DriftProfile(variables=("hr",), edges=np.array([0.0, 100.0]), level_edges=np.array([[50.0], [90.0], [130.0]]),
                           course=np.array([[[[4.0]] * 3, [[-4.0]] * 3]]))  # (1 band, 2 levels, 3 hours, 1)
    n = 2 * DRIFT_MIN_STAYS
    bands = np.zeros(n, dtype=np.int64)
    first = np.concatenate([np.full(DRIFT_MIN_STAYS, 70.0), np.full(DRIFT_MIN_STAYS, 110.0)])[:, None]
    last = first + np.concatenate([np.full(DRIFT_MIN_STAYS, 2.0), np.full(DRIFT_MIN_STAYS, -6.0)])[:, None]
    correction = _drift_correction(profile, last, np.arange(n), 1, first.copy(), bands, sigma=np.array([4.0]), gain=0.5)
    np.testing.assert_allclose(correction[:, 0], [0.5 * 2 / 4, 0.5 * 2 / 4])
    far = _drift_correction(profile, last - 100, np.arange(n), 1, first.copy(), bands, sigma=np.array([1.0]), gain=1.0)
    np.testing.assert_allclose(far[:, 0], MAX_CORRECTION)
    # a stay without a value yet: no first value; the high band is one short and does not lean
    last[-1] = np.nan
    unset = first.copy()
    unset[-1] = np.nan
    short = _drift_correction(profile, last, np.arange(n), 1, unset, bands, sigma=np.array([4.0]), gain=0.5)
    np.testing.assert_allclose(short[:, 0], [0.25, 0.0])
    assert np.isnan(unset[-1, 0])
    # a stay's first value is set by its first charting, in place
    last[-1] = 120.0
    _drift_correction(profile, last, np.arange(n), 2, unset, bands, sigma=np.array([4.0]), gain=0.5)
    assert unset[-1, 0] == 120.0
