"""Small random cohorts for the fidelity and privacy tests: same generator = same population."""

from __future__ import annotations

import numpy as np
import polars as pl

from organsim.data import Cohort


def random_cohort(n_stays: int, seed: int, *, hr_shift: float = 0.0, first_id: int = 1, hours: int = 12) -> Cohort:
    """``n_stays`` stays of ``hours`` hours: hr ~ N(85 + shift, 12) per stay level plus noise, map tied
    to hr, lactate every 4th hour; ages N(65, 12)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(first_id, first_id + n_stays)
    level = rng.normal(85 + hr_shift, 12, n_stays)
    stay = np.repeat(ids, hours)
    hour = np.tile(np.arange(1, hours + 1), n_stays)
    hr = np.repeat(level, hours) + rng.normal(0, 4, n_stays * hours)
    map_ = 120 - 0.6 * hr + rng.normal(0, 3, n_stays * hours)
    lactate = np.where(hour % 4 == 0, rng.lognormal(0.3, 0.4, n_stays * hours), np.nan)
    hourly = pl.DataFrame({"stay_id": stay, "hour": hour, "hr": hr, "map": map_, "lactate": lactate}).with_columns(
        pl.col("lactate").fill_nan(None))
    stays = pl.DataFrame({"stay_id": ids, "age": rng.normal(65, 12, n_stays).clip(18, 100),
                          "sex": rng.integers(0, 2, n_stays), "sepsis": np.zeros(n_stays, dtype=bool)})
    return Cohort.from_frames(stays, hourly, source="test")
