"""MEDS writer and reader: golden events, lossless round trip, foreign MEDS, and input errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from organsim.data import Cohort, read_meds, write_meds
from organsim.data.meds import DATA_SCHEMA, cohort_to_meds
from organsim.utils import DataError

EPOCH = datetime(2000, 1, 1)


def _at(hour: int) -> datetime:
    return EPOCH + timedelta(hours=hour)


def test_golden_events_of_one_stay(small_cohort: Cohort) -> None:
    events = cohort_to_meds(small_cohort.subset([11]))
    expected = pl.DataFrame(
        [
            (1, None, "LABEL//death", 0.0),
            (1, None, "LABEL//sepsis", 0.0),
            (1, None, "STATIC//age", 60.5),
            (1, None, "STATIC//hosp_adm_hours", -1.5),
            (1, None, "STATIC//sex", 1.0),
            (1, None, "STATIC//source//test", None),
            (1, None, "STATIC//unit//MICU", None),
            (1, _at(1), "LAB//fio2", 0.21),
            (1, _at(1), "VITAL//hr", 80.0),
            (1, _at(1), "VITAL//map", 70.0),
            (1, _at(2), "VITAL//map", 71.0),
            (1, _at(3), "LAB//lactate", 1.2),
            (1, _at(3), "VITAL//hr", 82.5),
        ],
        schema={k: v for k, v in DATA_SCHEMA.items() if k != "stay_id"},
        orient="row",
    ).with_columns(pl.lit(11, pl.Int64).alias("stay_id"))
    assert_frame_equal(events, expected)


def test_round_trip_is_lossless(small_cohort: Cohort, tmp_path: Path) -> None:
    cohort = small_cohort.split((0.6, 0.2, 0.2), seed=3)
    write_meds(cohort, tmp_path / "meds", subjects_per_shard=2)
    back = read_meds(tmp_path / "meds")
    for table in ("stays", "hourly", "treatments"):
        assert_frame_equal(getattr(back, table), getattr(cohort, table))
    assert back.meta["source"] == "test" and back.meta["treatments_recorded"] is True
    report = back.meta["provenance"]["ingest_report"]
    assert report["out_of_range"] == {} and report["dropped"] == {} and report["files"] == 3


def test_layout_on_disk(small_cohort: Cohort, tmp_path: Path) -> None:
    out = write_meds(small_cohort.split(seed=0), tmp_path / "meds", subjects_per_shard=2)
    assert sorted(p.name for p in (out / "data").iterdir()) == ["0.parquet", "1.parquet", "2.parquet"]
    subjects = [set(pl.read_parquet(p)["subject_id"]) for p in sorted((out / "data").iterdir())]
    assert subjects == [{1, 2}, {3, 4}, {5}]
    shard = pl.read_parquet(out / "data" / "2.parquet")
    assert shard.schema == pl.Schema(DATA_SCHEMA)
    assert shard.select(pl.col("time").is_null().first()).item()  # statics first
    codes = pl.read_parquet(out / "metadata" / "codes.parquet")
    assert set(codes["code"]) == set(cohort_to_meds(small_cohort)["code"])
    assert codes.filter(pl.col("code") == "VITAL//hr")["description"].item() == "Heart rate (beats/min)"
    dataset = json.loads((out / "metadata" / "dataset.json").read_text())
    assert dataset["etl_name"] == "organsim" and dataset["other_extension_columns"] == ["stay_id"]
    splits = pl.read_parquet(out / "metadata" / "subject_splits.parquet")
    assert set(splits["split"]) <= {"train", "tuning", "held_out"} and splits.height == 5
    assert pl.read_parquet(out / "data" / "1.parquet").filter(pl.col("code") == "ICU_HOUR")["stay_id"].to_list() == [13]


def test_writing_twice_gives_identical_files(small_cohort: Cohort, tmp_path: Path) -> None:
    first = write_meds(small_cohort, tmp_path / "a")
    second = write_meds(small_cohort, tmp_path / "b")
    for file in sorted(first.rglob("*")):
        if file.is_file():
            assert file.read_bytes() == (second / file.relative_to(first)).read_bytes(), file


def _foreign(tmp_path: Path, events: list[tuple], extra: dict | None = None) -> Path:
    root = tmp_path / "foreign"
    (root / "data").mkdir(parents=True)
    frame = pl.DataFrame(events, schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.Utf8,
                                         "numeric_value": pl.Float32}, orient="row")
    if extra:
        frame = frame.with_columns(**extra)
    frame.write_parquet(root / "data" / "train_0.parquet")
    return root


def test_foreign_meds_hours_from_first_event(tmp_path: Path) -> None:
    t0 = datetime(2150, 3, 1, 8, 30)
    root = _foreign(tmp_path, [
        (7, None, "STATIC//age", 64.0),
        (7, t0, "ADMISSION//ICU", None),
        (7, t0 + timedelta(minutes=20), "VITAL//hr", 88.0),
        (7, t0 + timedelta(minutes=50), "VITAL//hr", 92.0),  # same hour: the later one is kept
        (7, t0 + timedelta(hours=2, minutes=5), "LAB//lactate", 3.5),
        (7, t0 + timedelta(hours=2, minutes=6), "LAB//lactate", 45.0),  # above plausible: nulled
        (7, t0 + timedelta(hours=3), "DIAGNOSIS//ICD10//A41", None),
        (7, t0 + timedelta(hours=4), "LABEL//sepsis_onset", None),
    ])
    cohort = read_meds(root)
    assert cohort.hourly.select("stay_id", "hour", "hr", "lactate").rows() == [(7, 1, 92.0, None), (7, 3, None, None)]
    assert cohort.stays.select("stay_id", "subject_id", "age", "sepsis", "sepsis_onset_hour", "source").row(0) == (
        7, 7, 64.0, True, 5, "meds")
    report = cohort.meta["provenance"]["ingest_report"]
    assert report["dropped"] == {"events_with_unmapped_codes": 2, "unmapped_codes": 2,
                                 "variable_values_superseded_in_same_hour": 2}
    assert report["out_of_range"] == {"lactate": {"below": 0, "above": 1}}


def _written(small_cohort: Cohort, tmp_path: Path) -> tuple[Path, Path, pl.DataFrame]:
    out = write_meds(small_cohort, tmp_path / "meds")
    shard = out / "data" / "0.parquet"
    return out, shard, pl.read_parquet(shard)


@pytest.mark.parametrize(
    ("edit", "row", "column", "words"),
    [
        (lambda f: f.drop("code"), 0, "code", "required column"),
        (lambda f: f.with_columns(pl.when(pl.int_range(pl.len()) == 4).then(None).otherwise(pl.col("subject_id"))
                                  .alias("subject_id")), 5, "subject_id", "missing subject id"),
        (lambda f: f.with_columns(pl.when(pl.int_range(pl.len()) == 9).then(None).otherwise(pl.col("stay_id"))
                                  .alias("stay_id")), 10, "stay_id", "missing stay id"),
        (lambda f: f.with_columns(pl.when(pl.int_range(pl.len()) == 8).then(pl.lit("high"))
                                  .otherwise(pl.col("numeric_value").cast(pl.Utf8)).alias("numeric_value")),
         9, "numeric_value", "not a number"),
        (lambda f: f.with_columns(pl.when(pl.col("code") == "VITAL//hr").then(None).otherwise(pl.col("time"))
                                  .alias("time")), None, "time", "needs a time"),
        (lambda f: f.with_columns(pl.when(pl.col("code") == "TREATMENT//norepinephrine").then(9.0)
                                  .otherwise(pl.col("numeric_value")).alias("numeric_value")),
         None, "numeric_value", "plausible range"),
        (lambda f: f.head(0), 1, "subject_id", "no rows"),
    ],
)
def test_bad_shard_names_file_row_and_column(small_cohort: Cohort, tmp_path: Path, edit, row, column, words) -> None:
    out, shard, frame = _written(small_cohort, tmp_path)
    bad = edit(frame)
    bad.write_parquet(shard)
    with pytest.raises(DataError) as caught:
        read_meds(out)
    error = caught.value
    assert error.file == str(shard) and error.column == column and words in error.reason
    if row is None:  # the first offending row of the edited frame
        target = {"time": "VITAL//hr", "numeric_value": "TREATMENT//norepinephrine"}[column]
        row = int(bad["code"].eq(target).arg_true()[0]) + 1
    assert error.row == row
    assert f"row {row}, column '{column}'" in str(error)


def test_unknown_split_and_missing_shards(small_cohort: Cohort, tmp_path: Path) -> None:
    out = write_meds(small_cohort.split(seed=0), tmp_path / "meds")
    splits = out / "metadata" / "subject_splits.parquet"
    pl.read_parquet(splits).with_columns(pl.lit("dev").alias("split")).write_parquet(splits)
    with pytest.raises(DataError, match=r"subject_splits.parquet, row 1, column 'split': unknown split 'dev'"):
        read_meds(out)
    with pytest.raises(DataError, match="no data/\\*.parquet shards"):
        read_meds(tmp_path)


def test_writer_refuses_a_subject_in_two_splits(small_cohort: Cohort, tmp_path: Path) -> None:
    stays = small_cohort.stays.with_columns(
        pl.when(pl.col("stay_id") == 15).then(pl.lit("train")).otherwise(pl.lit("test")).alias("split"))
    cohort = Cohort(stays=stays, hourly=small_cohort.hourly, treatments=small_cohort.treatments, meta=small_cohort.meta)
    with pytest.raises(DataError, match="subject 5 has stays in several splits"):
        write_meds(cohort, tmp_path / "meds")
    assert not (tmp_path / "meds").exists()
