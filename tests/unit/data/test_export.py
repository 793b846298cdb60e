"""Exports: every format read back by its loader gives the same values; notes say what a format drops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from organsim.data import Cohort, read_meds, read_physionet2019, read_table
from organsim.data.export import (
    CHALLENGE_COLUMNS,
    FORMATS,
    export_cohort,
    is_synthetic,
    write_physionet2019,
)
from organsim.utils import DataError

STATICS = ["stay_id", "age", "sex", "unit", "hosp_adm_hours", "n_hours", "sepsis"]


def aligned_cohort(source: str = "engine") -> Cohort:
    """Three stays with treatments on every hourly row; stay 2's onset (hour 9) has a row 6 h before it."""
    hours = {1: range(1, 5), 2: range(1, 13), 3: range(2, 5)}
    rows = [(s, h) for s, hs in hours.items() for h in hs]
    rng = np.random.default_rng(3)
    hourly = pl.DataFrame({
        "stay_id": [r[0] for r in rows],
        "hour": [r[1] for r in rows],
        "hr": rng.normal(90, 10, len(rows)).astype(np.float32),
        "map": [None if i % 3 == 0 else float(v) for i, v in enumerate(rng.normal(70, 8, len(rows)).astype(np.float32))],
        "fio2": [0.4 if i % 4 == 0 else None for i in range(len(rows))],
        "cvp": [8.0] * len(rows),
    })
    treatments = pl.DataFrame({
        "stay_id": hourly["stay_id"], "hour": hourly["hour"],
        "iv_fluid_ml": [250.0 * (i % 2) for i in range(len(rows))],
        "norepinephrine": [0.05] * len(rows),
    })
    stays = pl.DataFrame({
        "stay_id": [1, 2, 3], "age": [61.25, 70.0, None], "sex": [1, 0, None], "unit": ["MICU", "SICU", None],
        "hosp_adm_hours": [-2.5, 0.0, -100.0], "weight": [80.0, None, 65.5], "sepsis_onset_hour": [None, 9, None],
        "death": [False, True, None], "split": ["train", "test", "train"],
    })
    return Cohort.from_frames(stays, hourly, treatments, source=source)


def read_psv_as_challenge_driver(path: Path) -> tuple[list[str], np.ndarray]:
    """Read a file the way the challenge's driver.py does: header split on '|', body by np.loadtxt."""
    with path.open() as handle:
        header = handle.readline().strip().split("|")
        data = np.loadtxt(handle, delimiter="|", ndmin=2)
    return header, data


def test_psv_round_trip_through_the_loader_and_the_challenge_reader(tmp_path: Path) -> None:
    cohort = aligned_cohort()
    summary = write_physionet2019(cohort, tmp_path / "psv")
    assert sorted(p.name for p in (tmp_path / "psv").iterdir()) == ["export.json", "p000001.psv", "p000002.psv",
                                                                    "p000003.psv"]
    back = read_physionet2019(tmp_path / "psv")
    codes = ["stay_id", "hour", "hr", "map", "fio2"]
    assert_frame_equal(back.hourly.select(codes), cohort.hourly.select(codes))
    assert_frame_equal(back.sepsis_labels(), cohort.sepsis_labels())
    assert_frame_equal(back.stays.select(*STATICS, "sepsis_onset_hour"), cohort.stays.select(*STATICS, "sepsis_onset_hour"))
    header, data = read_psv_as_challenge_driver(tmp_path / "psv" / "p000002.psv")
    assert tuple(header) == CHALLENGE_COLUMNS
    assert data.shape == (12, 41)
    assert data[:, header.index("SepsisLabel")].tolist() == [0.0] * 2 + [1.0] * 10  # 1 from hour 9 - 6 = 3 on
    assert data[:, header.index("ICULOS")].tolist() == list(range(1, 13))
    assert data[0, header.index("Unit1")] == 0 and data[0, header.index("Unit2")] == 1
    _, unknown_unit = read_psv_as_challenge_driver(tmp_path / "psv" / "p000003.psv")
    assert np.isnan(unknown_unit[:, [header.index("Age"), header.index("Unit1"), header.index("Unit2")]]).all()
    assert summary.synthetic and summary.stays == 3
    assert summary.notes[0] == "variables the challenge has no column for, dropped (values): cvp (19)"
    assert summary.notes[1] == "stay columns the challenge lacks, dropped (stays with a value): weight (2), death (2), split (3)"
    assert summary.notes[2].startswith("treatments dropped (19 treatment hours")
    manifest = json.loads((tmp_path / "psv" / "export.json").read_text())
    assert manifest["synthetic"] is True and manifest["notes"] == summary.notes and manifest["source"] == "engine"


def test_psv_notes_the_onsets_and_subjects_it_cannot_hold(small_cohort: Cohort, tmp_path: Path) -> None:
    summary = write_physionet2019(small_cohort, tmp_path / "psv")
    assert "6 stays have a subject_id other than their stay_id; the loader reads subject_id = stay_id" in summary.notes
    assert any(n.startswith("2 septic stays have no hourly row 6 h before onset") for n in summary.notes)
    back = read_physionet2019(tmp_path / "psv")
    assert_frame_equal(back.sepsis_labels(), small_cohort.sepsis_labels())  # labels stay exact
    assert back.stays.filter(pl.col("sepsis"))["sepsis_onset_hour"].to_list() == [7, 7]  # onsets 5 and 2 read back later
    assert not is_synthetic(small_cohort) and not summary.synthetic


def test_psv_rejects_a_negative_stay_id(tmp_path: Path) -> None:
    cohort = Cohort.from_frames(pl.DataFrame({"stay_id": [-4], "sepsis": [False]}),
                                pl.DataFrame({"stay_id": [-4], "hour": [1], "hr": [80.0]}), source="test")
    with pytest.raises(DataError, match="stay_id -4 is negative"):
        write_physionet2019(cohort, tmp_path / "psv")
    assert not (tmp_path / "psv").exists()


def test_an_interrupted_export_leaves_the_old_directory(tmp_path: Path) -> None:
    out = tmp_path / "psv"
    write_physionet2019(aligned_cohort(), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def fail_on_second_file(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_physionet2019(aligned_cohort("synthetic"), out, progress=fail_on_second_file)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["psv"]  # no temporary directory left behind


def test_csv_round_trip_is_exact(tmp_path: Path) -> None:
    cohort = aligned_cohort()
    summary = export_cohort(cohort, tmp_path / "csv", "csv")
    assert summary.notes == []
    back = read_table(tmp_path / "csv" / "hourly.csv", tmp_path / "csv" / "stays.csv")
    assert_frame_equal(back.stays, cohort.stays)
    assert_frame_equal(back.hourly, cohort.hourly)
    assert_frame_equal(back.treatments, cohort.treatments)


def test_csv_notes_hours_without_treatments(small_cohort: Cohort, tmp_path: Path) -> None:
    summary = export_cohort(small_cohort, tmp_path / "csv", "csv")
    assert summary.notes == ["12 hourly rows without a treatments row read back with the treatments' defaults"]
    back = read_table(tmp_path / "csv" / "hourly.csv", tmp_path / "csv" / "stays.csv")
    assert_frame_equal(back.hourly, small_cohort.hourly)
    assert_frame_equal(back.stays, small_cohort.stays)
    given = back.treatments.join(small_cohort.treatments.select("stay_id", "hour"), on=["stay_id", "hour"], how="semi")
    assert_frame_equal(given, small_cohort.treatments)
    assert back.treatments.height == small_cohort.hourly.height


@pytest.mark.parametrize("meta, synthetic", [({"source": "engine"}, True), ({"source": "test"}, False),
                                             ({"source": "test", "synthetic": True}, True)])
def test_meds_round_trip_and_synthetic_flag(tmp_path: Path, meta: dict, synthetic: bool) -> None:
    cohort = aligned_cohort(meta["source"])
    cohort.meta.update(meta)
    summary = export_cohort(cohort, tmp_path / "meds", "meds")
    dataset = json.loads((tmp_path / "meds" / "metadata" / "dataset.json").read_text())
    assert dataset["synthetic"] is synthetic and summary.synthetic is synthetic
    assert dataset["meds_version"] and dataset["etl_name"] == "organsim"
    back = read_meds(tmp_path / "meds")
    assert_frame_equal(back.stays, cohort.stays)
    assert_frame_equal(back.hourly, cohort.hourly)
    assert_frame_equal(back.treatments, cohort.treatments)


def test_parquet_is_the_canonical_cohort_and_every_format_is_deterministic(tmp_path: Path) -> None:
    cohort = aligned_cohort()
    export_cohort(cohort, tmp_path / "parquet", "parquet")
    back = Cohort.load(tmp_path / "parquet")
    for table in ("stays", "hourly", "treatments"):
        assert_frame_equal(getattr(back, table), getattr(cohort, table))
    for fmt in ("csv", "psv"):
        first = export_cohort(cohort, tmp_path / f"{fmt}1", fmt).path
        second = export_cohort(cohort, tmp_path / f"{fmt}2", fmt).path
        assert {p.name: p.read_bytes() for p in first.iterdir()} == {p.name: p.read_bytes() for p in second.iterdir()}


def test_unknown_format_and_no_overwrite(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown export format 'xlsx'"):
        export_cohort(aligned_cohort(), tmp_path / "x", "xlsx")
    (tmp_path / "taken").mkdir()
    for fmt in FORMATS:
        with pytest.raises(FileExistsError):
            export_cohort(aligned_cohort(), tmp_path / "taken", fmt, overwrite=False)
