"""PhysioNet 2019 loader: golden in/out on small files, archives, and every input error."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import polars as pl
import pytest
from physionet_files import PSV_COLUMNS, psv_text, stay_rows
from polars.testing import assert_frame_equal

from organsim.data import read_physionet2019
from organsim.utils import DataError


def test_golden_two_stays(two_stays: Path) -> None:
    cohort = read_physionet2019(two_stays)
    expected_stays = pl.DataFrame(
        {
            "stay_id": [11, 12],
            "subject_id": [11, 12],
            "source": ["physionet2019"] * 2,
            "age": [60.0, 71.5],
            "sex": [1, 0],
            "weight": [None, None],
            "unit": ["MICU", None],
            "hosp_adm_hours": [-5.5, -0.02],
            "n_hours": [3, 8],
            "sepsis": [False, True],
            "sepsis_onset_hour": [None, 10],
            "death": [None, None],
            "split": [None, None],
        },
        schema=cohort.stays.schema,
    )
    assert_frame_equal(cohort.stays, expected_stays)
    expected_hourly = pl.DataFrame(
        {
            "stay_id": [11, 11, 11] + [12] * 8,
            "hour": [1, 2, 3, *range(2, 10)],
            "hr": [80.0, None, 85.0, *[100.0 + h for h in range(8)]],
            "fio2": [0.4, 0.5, None] + [None] * 8,  # 40 % -> 0.4
            "calcium": [None, 8.9, None] + [None] * 8,  # 1.1 is ionised calcium: nulled
            "spo2": [97.0, 98.0, None] + [None] * 8,  # 101 % is above the plausible range
        },
        schema={"stay_id": pl.Int64, "hour": pl.Int32, "hr": pl.Float32, "fio2": pl.Float32, "calcium": pl.Float32,
                "spo2": pl.Float32},
    )
    assert_frame_equal(cohort.hourly.select(expected_hourly.columns), expected_hourly)
    assert cohort.hourly.drop(expected_hourly.columns).null_count().sum_horizontal().item() == 11 * (
        len(cohort.catalog.variable_codes) - 4)
    report = cohort.meta["provenance"]["ingest_report"]
    assert report["out_of_range"] == {"calcium": {"below": 1, "above": 0}, "spo2": {"below": 0, "above": 1}}
    assert report["converted"] == {"fio2_percent_to_fraction": 1}
    assert report["flagged"] == {}
    assert (report["stays"], report["hours"], report["septic_stays"], report["files"]) == (2, 11, 1, 2)
    assert cohort.meta["treatments_recorded"] is False and cohort.treatments.height == 0


def test_recomputed_labels_equal_the_files(two_stays: Path) -> None:
    labels = read_physionet2019(two_stays).sepsis_labels()
    assert labels.filter(pl.col("stay_id") == 12)["sepsis_label"].to_list() == [0, 0, 1, 1, 1, 1, 1, 1]
    assert labels.filter(pl.col("stay_id") == 11)["sepsis_label"].to_list() == [0, 0, 0]


def test_left_censored_onset_is_flagged(tmp_path: Path) -> None:
    (tmp_path / "p7.psv").write_text(psv_text(stay_rows(range(1, 4), positive_from=1, HR=[90, 91, 92])))
    cohort = read_physionet2019(tmp_path)
    assert cohort.stays["sepsis_onset_hour"].to_list() == [7]
    assert cohort.meta["provenance"]["ingest_report"]["flagged"] == {"onset_left_censored": 1}


def _tar(src: Path, target: Path) -> Path:
    with tarfile.open(target, "w:gz") as archive:
        for file in sorted(src.iterdir()):
            archive.add(file, arcname=f"training_setB/{file.name}")
    return target


def test_archives_give_the_same_cohort(two_stays: Path, tmp_path: Path) -> None:
    from_dir = read_physionet2019(two_stays)
    zipped = tmp_path / "set.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        for file in sorted(two_stays.iterdir()):
            archive.write(file, arcname=f"training_setB/{file.name}")
    seen: list[tuple[int, int]] = []
    from_tar = read_physionet2019(_tar(two_stays, tmp_path / "set.tar.gz"), progress=lambda d, t: seen.append((d, t)))
    for other in (from_tar, read_physionet2019(zipped)):
        assert_frame_equal(other.stays, from_dir.stays)
        assert_frame_equal(other.hourly, from_dir.hourly)
    assert seen and seen[-1][0] <= seen[-1][1]


def test_batches_give_the_same_cohort(two_stays: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = read_physionet2019(two_stays)
    monkeypatch.setattr("organsim.data.physionet.BATCH_FILES", 1)
    one_by_one = read_physionet2019(two_stays)
    assert_frame_equal(one_by_one.stays, whole.stays)
    assert_frame_equal(one_by_one.hourly, whole.hourly)
    assert one_by_one.meta["provenance"]["ingest_report"] == whole.meta["provenance"]["ingest_report"]


def test_files_with_different_headers_are_merged(tmp_path: Path) -> None:
    (tmp_path / "p1.psv").write_text(psv_text(stay_rows(range(1, 3), HR=[80, 81])))
    columns = ["ICULOS", "SepsisLabel", "Temp"]
    (tmp_path / "p2.psv").write_text(psv_text([{"ICULOS": 1, "SepsisLabel": 0, "Temp": 37.5}], columns))
    cohort = read_physionet2019(tmp_path)
    assert cohort.hourly.select("stay_id", "hr", "temperature").rows() == [(1, 80.0, None), (1, 81.0, None), (2, None, 37.5)]
    assert cohort.stays["age"].to_list() == [60.0, None]


GOOD_ROWS = stay_rows(range(1, 4), HR=[80, 81, 82])
GOOD = psv_text(GOOD_ROWS)


def _edited(row: int, **changes: object) -> str:
    """GOOD with data row ``row`` (1-based) changed."""
    rows = [dict(r) for r in GOOD_ROWS]
    rows[row - 1].update(changes)
    return psv_text(rows)


BAD_FILES = {
    "unknown column": (GOOD.replace("HR|", "Heart|", 1), 0, "Heart"),
    "required column": (psv_text(GOOD_ROWS, [c for c in PSV_COLUMNS if c != "ICULOS"]), 0, "ICULOS"),
    "empty file": ("", 0, "ICULOS"),
    "no data rows": ("|".join(PSV_COLUMNS) + "\n", 1, "ICULOS"),
    "not a number": (_edited(2, HR="eighty"), 2, "HR"),
    "duplicate": (_edited(2, ICULOS=1), 2, "ICULOS"),
    "missing ICU hour": (_edited(2, ICULOS=None), 2, "ICULOS"),
    "not a whole number": (_edited(2, ICULOS=2.5), 2, "ICULOS"),
    "fields": (GOOD.replace("|3|0\n", "|3\n"), 3, "SepsisLabel"),
    "0...0 1...1": (_edited(2, SepsisLabel=1), 3, "SepsisLabel"),
    "0 or 1": (_edited(2, SepsisLabel=2), 2, "SepsisLabel"),
    "changes within the stay": (_edited(3, HospAdmTime=-7), 3, "HospAdmTime"),
}


@pytest.mark.parametrize("words", list(BAD_FILES))
def test_bad_file_names_file_row_and_column(tmp_path: Path, words: str) -> None:
    content, row, column = BAD_FILES[words]
    (tmp_path / "p1.psv").write_text(GOOD)
    bad = tmp_path / "p5.psv"
    bad.write_text(content)
    with pytest.raises(DataError) as caught:
        read_physionet2019(tmp_path)
    error = caught.value
    assert (error.file, error.row, error.column) == (str(bad), row, column)
    assert words in error.reason
    assert f"file {bad}, row {row}, column '{column}'" in str(error)


def test_file_without_stay_id(tmp_path: Path) -> None:
    (tmp_path / "patient.psv").write_text(GOOD)
    with pytest.raises(DataError, match=r"file .*patient\.psv: file name must be p<digits>\.psv"):
        read_physionet2019(tmp_path)


def test_same_stay_twice(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "p3.psv").write_text(GOOD)
    with pytest.raises(DataError, match=r"b/p3\.psv: stay id 3 was already read from .*a/p3\.psv"):
        read_physionet2019(tmp_path)


def test_truncated_archive(two_stays: Path, tmp_path: Path) -> None:
    # a member big enough that the gzip stream cannot end before it does
    rows = stay_rows(range(1, 400), HR=[60 + (h * 37) % 90 for h in range(399)])
    (two_stays / "p000013.psv").write_text(psv_text(rows))
    archive = _tar(two_stays, tmp_path / "set.tar.gz")
    data = archive.read_bytes()
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError) as caught:
        read_physionet2019(truncated)
    assert caught.value.file == str(truncated)
    assert "truncated or corrupt" in caught.value.reason
    assert "last complete member: training_setB/p000012.psv" in caught.value.reason


def test_not_an_archive(tmp_path: Path) -> None:
    bogus = tmp_path / "set.tar.gz"
    bogus.write_bytes(b"this is not gzip data")
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_physionet2019(bogus)


def test_directory_without_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no p<id>.psv files found"):
        read_physionet2019(tmp_path)


def test_bytes_members_with_crlf_line_ends(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = GOOD.replace("\n", "\r\n").encode()
        info = tarfile.TarInfo("p4.psv")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    (tmp_path / "crlf.tgz").write_bytes(buffer.getvalue())
    cohort = read_physionet2019(tmp_path / "crlf.tgz")
    assert cohort.hourly["hr"].to_list() == [80.0, 81.0, 82.0]
