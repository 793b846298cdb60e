"""Helpers of the synthetic-cohort tests: small cohorts and a fake twin with the twin's rollout contract."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from organsim.catalog import Catalog
from organsim.data import Cohort
from organsim.data.windows import ForecastBatch
from organsim.physiology import EngineConfig, PhysiologyEngine

DETERIORATING = {"platelets": 0.93, "map": 0.99, "bilirubin_total": 1.05}
"""Hourly factor the fake twin applies to these variables, so SOFA rises over a stay."""


class FakeTwin:
    """Carries each variable's last charted value forward with 1 % noise; platelets, MAP and bilirubin
    drift toward organ dysfunction (a SOFA rise within a day). Values stay inside the catalog's
    plausible ranges unless ``overshoot``, which doubles every SpO2 (beyond 100 %). Returns the batch's
    planned treatments and records every treatment policy it was given (it does not call them)."""

    def __init__(self, catalog: Catalog, *, overshoot: bool = False) -> None:
        self.catalog = catalog
        self.overshoot = overshoot
        self.policies: list[object] = []

    def rollout(self, batch: ForecastBatch, horizon: int, *, n_samples: int = 1, seed: int = 0, treatment_policy=None):
        if treatment_policy is not None:
            self.policies.append(treatment_policy)
        rng = np.random.default_rng(seed)
        last = np.full((batch.size, len(batch.variables)), np.nan)
        for step in range(batch.context_hours):
            last = np.where(np.isfinite(batch.values[:, step]), batch.values[:, step], last)
        drift = np.array([DETERIORATING.get(v, 1.0) for v in batch.variables])
        hours = np.arange(1, horizon + 1)[None, :, None]
        paths = last[:, None, :] * drift[None, None, :] ** hours * (1 + 0.01 * rng.standard_normal((batch.size, horizon, len(batch.variables))))
        bounds = np.array([self.catalog.variable(v).plausible for v in batch.variables])
        paths = np.clip(paths, bounds[:, 0], bounds[:, 1]).astype(np.float32)
        if self.overshoot:
            paths[..., batch.variables.index("spo2")] *= 2
        planned = batch.treatments[:, batch.context_hours : batch.context_hours + horizon]
        return SimpleNamespace(values=paths[None], treatments=planned[None])


def engine_cohort(n_patients: int = 40, seed: int = 1) -> Cohort:
    """A small engine cohort (treatments recorded), split 60/20/20 by patient."""
    return PhysiologyEngine(EngineConfig(n_patients=n_patients, hours=36, seed=seed)).generate().split((0.6, 0.2, 0.2), seed=0)


def without_treatments(cohort: Cohort) -> Cohort:
    """The cohort as a PhysioNet-like one: no treatments recorded, no weight, unit or death."""
    stays = cohort.stays.drop("n_hours").with_columns(weight=None, unit=None, death=None)
    unsplit = Cohort.from_frames(stays.drop("split"), cohort.hourly, None, source="physionet2019", catalog=cohort.catalog)
    return unsplit.split((0.6, 0.2, 0.2), seed=0)
