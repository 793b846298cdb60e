"""A small synthetic cohort for the organ-agent tests: every variable and treatment has values."""

from __future__ import annotations

import numpy as np
import polars as pl

from organsim.catalog import Catalog
from organsim.data import Cohort


def synthetic_agent_cohort(catalog: Catalog, *, n_stays: int = 16, min_hours: int = 14, max_hours: int = 30, seed: int = 0) -> Cohort:
    """``n_stays`` stays of random length; each variable an AR(1) walk inside its normal range.

    Vitals (and bedside values) are measured 90% of hours, labs 25%; every stay gets treatments.
    """
    rng = np.random.default_rng(seed)
    hourly_rows, treatment_rows, stays = [], [], []
    for stay in range(1, n_stays + 1):
        n = int(rng.integers(min_hours, max_hours + 1))
        columns: dict[str, np.ndarray] = {"stay_id": np.full(n, stay), "hour": np.arange(n)}
        for variable in catalog.variables:
            lo, hi = variable.normal if variable.normal[1] > variable.normal[0] else variable.plausible
            level = rng.uniform(lo, hi)
            noise = np.cumsum(rng.normal(0, (hi - lo) / 20, n)) * 0.5
            values = np.clip(level + noise, *variable.plausible)
            measured = rng.random(n) < (0.25 if variable.kind == "lab" else 0.9)
            columns[variable.code] = np.where(measured, values, np.nan)
        hourly_rows.append(pl.DataFrame(columns))
        treatments = {"stay_id": np.full(n, stay), "hour": np.arange(n)}
        for treatment in catalog.treatments:
            if treatment.kind == "binary":
                treatments[treatment.code] = (rng.random(n) < 0.3).astype(float)
            else:
                treatments[treatment.code] = rng.uniform(0, treatment.plausible[1] / 10, n) * (rng.random(n) < 0.5)
        treatment_rows.append(pl.DataFrame(treatments))
        stays.append({"stay_id": stay, "age": float(rng.uniform(20, 90)), "sex": int(rng.integers(0, 2)),
                      "weight": float(rng.uniform(50, 120)), "hosp_adm_hours": float(-rng.uniform(0, 50)),
                      "sepsis": bool(stay % 4 == 0)})
    hourly = pl.concat(hourly_rows).with_columns(pl.col("hour").cast(pl.Int32))
    treatments = pl.concat(treatment_rows).with_columns(pl.col("hour").cast(pl.Int32))
    stays_frame = pl.DataFrame(stays).with_columns(pl.col("sex").cast(pl.Int8))
    return Cohort.from_frames(stays_frame, hourly, treatments, source="synthetic", catalog=catalog)
