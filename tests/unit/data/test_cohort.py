"""The canonical Cohort: construction checks, save/load, xarray view, splits, subsets, summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from organsim.data import Cohort
from organsim.utils import DataError


def test_save_load_round_trip(small_cohort: Cohort, tmp_path: Path) -> None:
    out = small_cohort.save(tmp_path / "cohort")
    assert sorted(p.name for p in out.iterdir()) == ["cohort.json", "hourly.parquet", "stays.parquet", "treatments.parquet"]
    back = Cohort.load(out)
    for table in ("stays", "hourly", "treatments"):
        assert_frame_equal(getattr(back, table), getattr(small_cohort, table))
    header = json.loads((out / "cohort.json").read_text())
    assert header["counts"] == {"stays": 6, "hours": 16, "septic_stays": 2, "treatment_hours": 4}
    assert header["source"] == "test" and header["treatments_recorded"] is True


def test_failed_save_keeps_the_previous_cohort(small_cohort: Cohort, tmp_path: Path) -> None:
    out = small_cohort.save(tmp_path / "cohort")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    broken = Cohort(stays=small_cohort.stays, hourly=pl.concat([small_cohort.hourly, small_cohort.hourly.head(1)]),
                    treatments=small_cohort.treatments, meta=small_cohort.meta)
    with pytest.raises(DataError, match=r"row 17, column 'hour': duplicate"):
        broken.save(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["cohort"]  # no temporary directory left behind


def test_load_names_the_broken_file(small_cohort: Cohort, tmp_path: Path) -> None:
    out = small_cohort.save(tmp_path / "cohort")
    (out / "cohort.json").write_text("{not json")
    with pytest.raises(DataError, match=r"cohort\.json, row 1: not valid JSON"):
        Cohort.load(out)
    small_cohort.save(out)
    (out / "hourly.parquet").unlink()
    with pytest.raises(DataError, match=r"hourly\.parquet is missing"):
        Cohort.load(out)


def test_from_frames_checks(small_cohort: Cohort) -> None:
    stays = pl.DataFrame({"stay_id": [1], "sepsis": [False], "sepsis_onset_hour": [4]})
    hourly = pl.DataFrame({"stay_id": [1], "hour": [1], "hr": [80.0]})
    with pytest.raises(DataError, match=r"row 1, column 'sepsis': the stay has a sepsis onset hour but sepsis is false"):
        Cohort.from_frames(stays, hourly, source="x")
    stays = stays.drop("sepsis")
    with pytest.raises(DataError, match=r"row 0, column 'heart_rate': unknown column"):
        Cohort.from_frames(stays, hourly.rename({"hr": "heart_rate"}), source="x")
    with pytest.raises(DataError, match=r"row 2, column 'hr': 'fast' is not a valid Float32"):
        Cohort.from_frames(stays, pl.DataFrame({"stay_id": [1, 1], "hour": [1, 2], "hr": ["80", "fast"]}), source="x")
    with pytest.raises(DataError, match=r"row 1, column 'hour': 1.5 is not a valid Int32"):
        Cohort.from_frames(stays, pl.DataFrame({"stay_id": [1], "hour": [1.5]}), source="x")
    with pytest.raises(DataError, match=r"row 1, column 'stay_id': stay_id 2 is not in stays"):
        Cohort.from_frames(stays, pl.DataFrame({"stay_id": [2], "hour": [1]}), source="x")
    narrow = Cohort.from_frames(stays, hourly.with_columns(pl.col("stay_id").cast(pl.Int32)), source="x")
    assert narrow.stays.select("n_hours", "sepsis").row(0) == (1, True)  # derived from the onset hour


def test_to_xarray(small_cohort: Cohort) -> None:
    array = small_cohort.to_xarray()
    n_variables = len(small_cohort.catalog.variable_codes)
    assert array.shape == (6, 6, n_variables) and array.dtype == np.float32
    assert array.dims == ("stay", "hour", "variable")
    assert array.coords["hour"].values.tolist() == [1, 2, 3, 4, 5, 6]
    assert array.sel(stay=12, hour=5, variable="lactate").item() == pytest.approx(4.1, rel=1e-6)
    assert array.sel(stay=11, hour=3, variable="hr").item() == 82.5
    assert np.isnan(array.sel(stay=11, hour=2, variable="hr").item())  # not measured
    assert np.isnan(array.sel(stay=11, hour=4).values).all()  # after the stay ended
    assert np.isnan(array.sel(stay=14, hour=[1, 2]).values).all()  # before the stay began
    assert int(np.isfinite(array.values).sum()) == sum(
        small_cohort.hourly[c].is_not_null().sum() for c in small_cohort.catalog.variable_codes)
    subset = small_cohort.to_xarray(["map", "hr"])
    assert subset.coords["variable"].values.tolist() == ["map", "hr"]
    treatments = small_cohort.to_xarray(table="treatments")
    assert treatments.shape == (6, 5, 4) and treatments.coords["hour"].values.tolist() == [2, 3, 4, 5, 6]
    assert treatments.sel(stay=15, hour=2, variable="iv_fluid_ml").item() == 1000
    with pytest.raises(ValueError, match="table must be"):
        small_cohort.to_xarray(table="stays")


def _many_subjects(n_subjects: int = 200, n_septic: int = 40) -> Cohort:
    stay_ids = np.arange(1, n_subjects + 11)
    subject_ids = np.concatenate([np.arange(1, n_subjects + 1), np.arange(1, 11)])  # subjects 1..10 have two stays
    septic = subject_ids <= n_septic
    stays = pl.DataFrame({"stay_id": stay_ids, "subject_id": subject_ids,
                          "sepsis_onset_hour": np.where(septic, 3, None).tolist()})
    hourly = pl.DataFrame({"stay_id": stay_ids, "hour": np.ones_like(stay_ids)})
    return Cohort.from_frames(stays, hourly, source="x")


def test_split_is_by_subject_stratified_seeded_and_deterministic() -> None:
    cohort = _many_subjects()
    split = cohort.split((0.7, 0.15, 0.15), seed=7)
    per_subject = split.stays.group_by("subject_id").agg(pl.col("split").n_unique())
    assert per_subject["split"].max() == 1  # a subject's stays stay together
    subjects = split.stays.unique("subject_id")
    septic = subjects.filter(pl.col("sepsis"))["split"].value_counts().sort("split").rows()
    healthy = subjects.filter(~pl.col("sepsis"))["split"].value_counts().sort("split").rows()
    assert septic == [("test", 6), ("train", 28), ("validation", 6)]
    assert healthy == [("test", 24), ("train", 112), ("validation", 24)]
    assert split.stays["stay_id"].to_list() == cohort.stays["stay_id"].to_list()  # row order kept
    assert_frame_equal(cohort.split((0.7, 0.15, 0.15), seed=7).stays, split.stays)
    assert not cohort.split((0.7, 0.15, 0.15), seed=8).stays["split"].equals(split.stays["split"])
    assert split.counts()["splits"] == {s: int((split.stays["split"] == s).sum()) for s in ("train", "validation", "test")}
    with pytest.raises(ValueError, match="summing to 1"):
        cohort.split((0.5, 0.2, 0.2))


def test_subset(small_cohort: Cohort) -> None:
    part = small_cohort.subset([12, 15])
    assert part.stays["stay_id"].to_list() == [12, 15]
    assert set(part.hourly["stay_id"]) == {12, 15} and part.hourly.height == 9
    assert part.treatments.height == 4
    split = small_cohort.split((0.6, 0.2, 0.2), seed=1)
    for name in ("train", "validation", "test"):
        chosen = split.subset(split=name)
        assert set(chosen.stays["split"]) <= {name}
        assert set(chosen.hourly["stay_id"]) <= set(chosen.stays["stay_id"])
    assert sum(split.subset(split=s).stays.height for s in ("train", "validation", "test")) == 6
    with pytest.raises(KeyError, match=r"\[99\]"):
        small_cohort.subset([12, 99])
    with pytest.raises(ValueError, match="split must be one of"):
        small_cohort.subset(split="dev")


def test_summary(small_cohort: Cohort) -> None:
    summary = small_cohort.summary()
    assert (summary["stays"], summary["hours"], summary["septic_stays"]) == (6, 16, 2)
    assert summary["septic_fraction"] == pytest.approx(2 / 6)
    assert summary["missingness_by_variable"]["hr"] == pytest.approx(3 / 16)
    assert summary["missingness_by_variable"]["lactate"] == pytest.approx(12 / 16)
    assert summary["missingness_by_variable"]["gcs"] == 1.0
    renal = [summary["missingness_by_variable"][v.code] for v in small_cohort.catalog.variables_of("renal")]
    assert summary["missingness_by_system"]["renal"] == pytest.approx(np.mean(renal))
    assert summary["treatments_recorded"] is True


def test_sepsis_labels(small_cohort: Cohort) -> None:
    labels = small_cohort.sepsis_labels(lead_hours=0)
    assert labels.filter(pl.col("stay_id") == 12)["sepsis_label"].to_list() == [0, 0, 0, 0, 1, 1]
    assert labels.filter(pl.col("stay_id") == 15)["sepsis_label"].to_list() == [0, 1, 1]
    assert labels.filter(~pl.col("stay_id").is_in([12, 15]))["sepsis_label"].sum() == 0
    assert small_cohort.sepsis_labels().filter(pl.col("stay_id") == 12)["sepsis_label"].to_list() == [1] * 6
    assert labels.select("stay_id", "hour").equals(small_cohort.hourly.select("stay_id", "hour"))
