"""Trajectory plots: one PNG per system that the chosen stays measured."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from organsim.agents.baselines import LastObservationForecaster
from organsim.data import Cohort
from organsim.evaluate.plots import plot_trajectories


def cohort_with_two_systems() -> Cohort:
    rng = np.random.default_rng(0)
    rows = [(s, h, float(80 + rng.normal(0, 5)), 1.0 + 0.1 * h if h % 6 == 0 else None) for s in range(1, 7) for h in range(20)]
    hourly = pl.DataFrame(rows, schema=["stay_id", "hour", "hr", "creatinine"], orient="row")
    stays = pl.DataFrame({"stay_id": list(range(1, 7)), "sepsis": [False] * 6})
    return Cohort.from_frames(stays, hourly, source="test")


def test_one_png_per_measured_system(tmp_path):
    cohort = cohort_with_two_systems()
    locf = LastObservationForecaster().fit(cohort)
    written = plot_trajectories({"locf": locf}, cohort, tmp_path / "plots", n_stays=2, horizon=6, context_hours=8)
    assert [p.name for p in written] == ["trajectories_cardiovascular.png", "trajectories_renal.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [p.name for p in written]


def test_too_short_stays_are_a_clear_error(tmp_path):
    cohort = cohort_with_two_systems()
    with pytest.raises(ValueError, match="long enough"):
        plot_trajectories({}, cohort, tmp_path, horizon=40)
