"""Helpers that write small PhysioNet 2019 files, and a tiny canonical cohort, for the data tests."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from physionet_files import psv_text, stay_rows

from organsim.data import Cohort


@pytest.fixture
def two_stays(tmp_path: Path) -> Path:
    """A directory with p000011.psv (3 h, not septic) and p000012.psv (hours 2..9, labelled from hour 4)."""
    src = tmp_path / "psv"
    src.mkdir()
    (src / "p000011.psv").write_text(psv_text(stay_rows(
        range(1, 4), HR=[80, None, 85], FiO2=[40, 0.5, None], Calcium=[1.1, 8.9, None], O2Sat=[97, 98, 101])))
    (src / "p000012.psv").write_text(psv_text(stay_rows(
        range(2, 10), age=71.5, gender=0, unit1=None, unit2=None, hosp=-0.02, positive_from=4,
        HR=[100 + h for h in range(8)])))
    return src


@pytest.fixture
def small_cohort() -> Cohort:
    """Six stays of five subjects (subject 5 has two stays), two septic, with treatments and empty hours."""
    stays = pl.DataFrame({
        "stay_id": [11, 12, 13, 14, 15, 16],
        "subject_id": [1, 2, 3, 4, 5, 5],
        "age": [60.5, 71.0, None, 45.25, 80.0, 80.0],
        "sex": [1, 0, 1, None, 0, 0],
        "unit": ["MICU", "SICU", None, "other", "MICU", "MICU"],
        "hosp_adm_hours": [-1.5, 0.0, -300.25, None, -2.0, -30.0],
        "sepsis_onset_hour": [None, 5, None, None, 2, None],
        "death": [False, True, None, False, None, True],
    })
    hourly = pl.DataFrame({
        "stay_id": [11, 11, 11, 12, 12, 12, 12, 12, 12, 13, 14, 14, 15, 15, 15, 16],
        "hour": [1, 2, 3, 1, 2, 3, 4, 5, 6, 1, 3, 4, 1, 2, 3, 1],
        "hr": [80.0, None, 82.5, 100, 105, 110, 115, 120, 125, None, 70, 71, 90, 95, None, 60],
        "map": [70.0, 71, None, 65, 60, 58, 55, 50, 52, None, 85, 86, 75, 70, None, 80],
        "lactate": [None, None, 1.2, None, 2.5, None, None, 4.1, None, None, None, None, 3.0, None, None, None],
        "fio2": [0.21, None, None, 0.4, None, None, 0.6, None, 1.0, None, None, None, None, 0.5, None, None],
    })
    treatments = pl.DataFrame({
        "stay_id": [12, 12, 12, 15],
        "hour": [4, 5, 6, 2],
        "iv_fluid_ml": [500.0, 250, 0, 1000],
        "norepinephrine": [0.0, 0.1, 0.25, 0.05],
        "antibiotic": [1.0, 0, 0, 1],
    })
    return Cohort.from_frames(stays, hourly, treatments, source="test")
