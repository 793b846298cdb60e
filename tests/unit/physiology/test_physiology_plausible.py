"""Every catalog variable is produced and stays within its plausible range on 1,000 generated patients."""

from __future__ import annotations

import numpy as np

from organsim.catalog import Catalog
from organsim.physiology import EngineConfig, PhysiologyEngine

NATURAL_BOUNDS = {("gcs", 3.0), ("gcs", 15.0), ("spo2", 100.0), ("sao2", 100.0), ("fio2", 0.21), ("fio2", 1.0), ("urine_output", 0.0)}
"""Catalog bounds the physiology itself reaches (deepest coma, full saturation, room air, anuria)."""


def test_every_variable_is_produced_within_its_plausible_range_on_1000_patients(catalog: Catalog) -> None:
    engine = PhysiologyEngine(EngineConfig(seed=21, n_patients=1000, hours=72))
    trajectory = engine.factual()
    lived = np.arange(1, 73)[None, :] <= trajectory.n_hours[:, None]  # (stays, hours) inside the stay
    for j, code in enumerate(trajectory.variables):
        low, high = catalog.variable(code).plausible
        true = trajectory.true[:, :, j][lived]
        assert not np.isnan(true).any(), f"{code}: the true trajectory has gaps"
        assert low <= true.min() and true.max() <= high, f"{code}: true values {true.min():.4g}..{true.max():.4g} outside [{low}, {high}]"
        # the engine keeps read-outs inside the range; the physiology itself must rarely need it
        for bound in (low, high):
            if (code, bound) not in NATURAL_BOUNDS:
                share = np.mean(true == bound)
                assert share <= 1e-3, f"{code}: {share:.2%} of true values sit at the plausible bound {bound}"
        observed = trajectory.observed[:, :, j][lived]
        observed = observed[~np.isnan(observed)]
        assert observed.size > 0, f"{code} is never measured"
        assert low <= observed.min() and observed.max() <= high, f"{code}: observed values outside [{low}, {high}]"
    # and the treatments stay inside theirs
    for k, code in enumerate(trajectory.treatment_codes):
        low, high = catalog.treatment(code).plausible
        assert low <= trajectory.treatments[:, :, k].min() and trajectory.treatments[:, :, k].max() <= high, code
    # the cohort built from it is varied: septic and not, survivors and deaths, every unit
    stays = engine.generate().stays
    assert 0.2 < stays["sepsis"].mean() < 0.5
    assert 0.02 < stays["death"].mean() < 0.25
    assert stays.group_by("unit").len().height == 3
    assert stays["age"].min() < 30 and stays["age"].max() > 85
