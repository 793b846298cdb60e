"""The stays' lab levels (organsim.synth.levels): the copula of the first charted labs, and its draws
given the labs a stay's first hours already chart."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from organsim.data import Cohort
from organsim.synth.levels import StayLevels, first_charted


def _levels(r: float) -> StayLevels:
    """Two labs, creatinine and phosphate, with score correlation ``r``; marginals 1..1000."""
    grid = np.arange(1.0, 1001.0)
    return StayLevels(variables=("creatinine", "phosphate"), sorted_values=(grid, grid),
                      correlation=np.array([[1.0, r], [r, 1.0]]), n_pairs=np.full((2, 2), 1000))


def test_first_charted_takes_each_stay_s_earliest_charted_value() -> None:
    hourly = pl.DataFrame({"stay_id": [2, 2, 2, 1, 1], "hour": [3, 1, 2, 0, 1],
                           "creatinine": [3.0, None, 2.0, None, None], "phosphate": [None, 5.0, 6.0, 4.0, None]})
    np.testing.assert_array_equal(first_charted(hourly, ["creatinine", "phosphate"]), [[np.nan, 4.0], [2.0, 5.0]])


def test_levels_fitted_on_stays_whose_labs_co_vary_carry_their_correlation(treated_cohort: Cohort) -> None:
    """Each stay's creatinine and phosphate are set to levels with score correlation 0.9 (every hour
    the same value): the fit finds it; a lab the stays never chart is left out."""
    stays = treated_cohort.stays["stay_id"].to_list()
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((len(stays), 2)) @ np.linalg.cholesky(np.array([[1.0, 0.9], [0.9, 1.0]])).T
    levels = pl.DataFrame({"stay_id": stays, "c": np.exp(scores[:, 0] / 3), "p": 3 + scores[:, 1]})
    hourly = treated_cohort.hourly.join(levels, on="stay_id").with_columns(
        creatinine=pl.col("c"), phosphate=pl.col("p"), troponin_i=None).drop("c", "p")
    cohort = Cohort.from_frames(treated_cohort.stays, hourly, treated_cohort.treatments, source="engine",
                                catalog=treated_cohort.catalog)
    fitted = StayLevels.fit(cohort, min_pairs=10)
    assert "troponin_i" not in fitted.variables and {"creatinine", "phosphate"} <= set(fitted.variables)
    i, j = fitted.variables.index("creatinine"), fitted.variables.index("phosphate")
    assert fitted.correlation[i, j] == pytest.approx(np.corrcoef(scores.T)[0, 1], abs=0.1)
    assert fitted.n_pairs[i, j] == len(stays)
    np.testing.assert_allclose(np.diag(fitted.correlation), 1.0)
    assert np.linalg.eigvalsh(fitted.correlation).min() > 0


def test_scores_of_first_values_read_them_under_the_training_stays() -> None:
    levels = _levels(0.5)
    scores = levels.scores_of(np.array([[500.5, np.nan], [1.0, 1000.0]]))
    assert scores[0, 0] == pytest.approx(0.0, abs=1e-3)  # the median
    assert np.isnan(scores[0, 1])
    assert scores[1, 0] == pytest.approx(stats.norm.ppf(1 / 1001))
    assert scores[1, 1] == pytest.approx(-scores[1, 0])


def test_levels_are_drawn_correlated_and_given_the_labs_already_charted() -> None:
    levels, n = _levels(0.8), 40_000
    rng = np.random.default_rng(1)
    free = levels.sample(np.full((n, 2), np.nan), rng)
    assert np.corrcoef(free.T)[0, 1] == pytest.approx(0.8, abs=0.02)
    assert free.std(axis=0) == pytest.approx([1.0, 1.0], abs=0.02)
    # creatinine charted high (score 1.5) in half the stays: their phosphate is drawn given it
    charted = np.full((n, 2), np.nan)
    charted[: n // 2, 0] = 934.0
    given = levels.sample(charted, np.random.default_rng(2))
    kept = levels.scores_of(charted)[: n // 2, 0]
    np.testing.assert_array_equal(given[: n // 2, 0], kept)
    assert given[: n // 2, 1].mean() == pytest.approx(0.8 * kept[0], abs=0.02)
    assert given[: n // 2, 1].std() == pytest.approx(np.sqrt(1 - 0.8**2), abs=0.02)
    assert np.corrcoef(given[n // 2 :].T)[0, 1] == pytest.approx(0.8, abs=0.03)  # the others as before
