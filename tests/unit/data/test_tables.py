"""Wide Parquet/CSV loader: golden in/out and input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from organsim.data import read_table
from organsim.utils import DataError

HOURLY_CSV = """stay_id,hour,hr,map,fio2,iv_fluid_ml,antibiotic
1,1,80,70,0.5,100,
1,2,,65,NaN,,1
2,1,300,64.5,0.21,0,0
"""
STAYS_CSV = """stay_id,subject_id,age,sex,unit,sepsis_onset_hour,death,split
1,10,70.5,1,MICU,2,true,train
2,20,150,0,,,0,test
"""


def _files(tmp_path: Path, hourly: str = HOURLY_CSV, stays: str | None = STAYS_CSV) -> tuple[Path, Path | None]:
    hourly_file = tmp_path / "hourly.csv"
    hourly_file.write_text(hourly)
    stays_file = None
    if stays is not None:
        stays_file = tmp_path / "stays.csv"
        stays_file.write_text(stays)
    return hourly_file, stays_file


def test_golden_csv(tmp_path: Path) -> None:
    cohort = read_table(*_files(tmp_path))
    assert cohort.stays.select("stay_id", "subject_id", "age", "sex", "unit", "sepsis", "sepsis_onset_hour", "death",
                               "split", "source", "n_hours").rows() == [
        (1, 10, 70.5, 1, "MICU", True, 2, True, "train", "table", 2),
        (2, 20, None, 0, None, False, None, False, "test", "table", 1),  # age 150 is implausible
    ]
    assert cohort.hourly.select("stay_id", "hour", "hr", "map", "fio2").rows() == [
        (1, 1, 80.0, 70.0, 0.5), (1, 2, None, 65.0, None), (2, 1, None, 64.5, float(np.float32(0.21)))]  # kept: on the bound
    assert cohort.treatments.select("hour", "iv_fluid_ml", "norepinephrine", "antibiotic").rows() == [
        (1, 100.0, 0.0, 0.0), (2, 0.0, 0.0, 1.0), (1, 0.0, 0.0, 0.0)]
    report = cohort.meta["provenance"]["ingest_report"]
    assert report["out_of_range"] == {"age": {"below": 0, "above": 1}, "hr": {"below": 0, "above": 1}}
    assert (report["stays"], report["hours"], report["septic_stays"], report["files"]) == (2, 3, 1, 2)


def test_parquet_equals_csv(tmp_path: Path) -> None:
    from_csv = read_table(*_files(tmp_path))
    hourly = pl.read_csv(tmp_path / "hourly.csv")
    hourly.write_parquet(tmp_path / "hourly.parquet")
    pl.read_csv(tmp_path / "stays.csv").write_parquet(tmp_path / "stays.parquet")
    from_parquet = read_table(tmp_path / "hourly.parquet", tmp_path / "stays.parquet")
    for table in ("stays", "hourly", "treatments"):
        assert_frame_equal(getattr(from_parquet, table), getattr(from_csv, table))


def test_without_stays_file_or_treatments(tmp_path: Path) -> None:
    hourly, _ = _files(tmp_path, "stay_id,hour,hr\n5,1,70\n5,2,71\n3,1,90\n", None)
    cohort = read_table(hourly)
    assert cohort.stays.select("stay_id", "subject_id", "sepsis", "n_hours").rows() == [(3, 3, False, 1), (5, 5, False, 2)]
    assert cohort.meta["treatments_recorded"] is False and cohort.treatments.height == 0
    assert any("no stays file" in rule for rule in cohort.meta["provenance"]["ingest_report"]["rules"])


@pytest.mark.parametrize(
    ("hourly", "stays", "bad_file", "row", "column", "words"),
    [
        ("stay_id,hour,heart\n1,1,80\n", None, "hourly.csv", 0, "heart", "unknown column"),
        ("hour,hr\n1,80\n", None, "hourly.csv", 0, "stay_id", "required column"),
        ("stay_id,hour,hr\n1,1,80\n,2,81\n", None, "hourly.csv", 2, "stay_id", "missing stay id"),
        ("stay_id,hour,hr\n1,1,80\n3,1,81\n", STAYS_CSV, "hourly.csv", 2, "stay_id", "not in the stays file"),
        ("stay_id,hour,hr\n1,1,80\n1,2,81\n1,1,82\n", None, "hourly.csv", 3, "hour", "duplicate"),
        ("stay_id,hour,hr\n1,1,80\n1,2,fast\n", None, "hourly.csv", 2, "hr", "not a number"),
        ("", None, "hourly.csv", 0, "stay_id", "empty file"),
        ("stay_id,hour,hr\n", None, "hourly.csv", 1, "stay_id", "no rows"),
        ("stay_id,hour,hr,norepinephrine\n1,1,80,7\n", None, "hourly.csv", 1, "norepinephrine", "plausible range"),
        ("stay_id,hour,hr\n1,1,80\n", "stay_id,sepsis\n1,maybe\n", "stays.csv", 1, "sepsis", "not a boolean"),
        ("stay_id,hour,hr\n1,1,80\n", "stay_id,sex\n1,0.5\n", "stays.csv", 1, "sex", "not a whole number"),
        ("stay_id,hour,hr\n1,1,80\n", "stay_id,colour\n1,red\n", "stays.csv", 0, "colour", "unknown column"),
        ("stay_id,hour,hr\n1,1,80\n", "stay_id,age\n1,50\n1,60\n", "stays.csv", 2, "stay_id", "duplicate"),
    ],
)
def test_bad_input_names_file_row_and_column(tmp_path: Path, hourly, stays, bad_file, row, column, words) -> None:
    with pytest.raises(DataError) as caught:
        read_table(*_files(tmp_path, hourly, stays))
    error = caught.value
    assert (error.file, error.row, error.column) == (str(tmp_path / bad_file), row, column)
    assert words in error.reason
    assert f"file {tmp_path / bad_file}, row {row}, column '{column}'" in str(error)
