"""The real PhysioNet 2019 archive (6,000 stays): counts, labels, values, and a lossless MEDS round trip.

Skipped with a message when ../shared/data/physionet2019 is absent (the ``physionet_archive`` fixture).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from organsim.data import Cohort, read_meds, read_physionet2019, write_meds

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.fixture(scope="module")
def cohort(physionet_archive: Path) -> Cohort:
    return read_physionet2019(physionet_archive)


@pytest.fixture(scope="module")
def raw(physionet_archive: Path) -> pl.DataFrame:
    """The archive read independently of the loader: one pl.read_csv per member."""
    frames = []
    with tarfile.open(physionet_archive, "r:gz") as archive:
        for member in archive.getmembers():
            if member.name.endswith(".psv"):
                frame = pl.read_csv(archive.extractfile(member).read(), separator="|", null_values="NaN",
                                    infer_schema=False, columns=["HR", "FiO2", "Calcium", "ICULOS", "SepsisLabel"])
                stay_id = int(Path(member.name).stem[1:])
                frames.append(frame.select(pl.lit(stay_id, pl.Int64).alias("stay_id"), pl.all().cast(pl.Float64)))
    return pl.concat(frames).sort(["stay_id", "ICULOS"])


def test_counts(cohort: Cohort) -> None:
    assert cohort.counts() == {"stays": 6000, "hours": 227_481, "septic_stays": 339, "treatment_hours": 0}
    report = cohort.meta["provenance"]["ingest_report"]
    assert (report["files"], report["stays"], report["hours"], report["septic_stays"]) == (6000, 6000, 227_481, 339)


def test_labels_and_values_match_the_files(cohort: Cohort, raw: pl.DataFrame) -> None:
    assert raw.height == cohort.hourly.height
    assert cohort.hourly["hour"].cast(pl.Float64).equals(raw["ICULOS"])
    assert cohort.sepsis_labels()["sepsis_label"].cast(pl.Float64).equals(raw["SepsisLabel"])
    assert cohort.hourly["hr"].equals(raw["HR"].cast(pl.Float32), null_equal=True)  # HR is all in range
    calcium = raw["Calcium"].drop_nulls().to_numpy()
    report = cohort.meta["provenance"]["ingest_report"]
    assert report["out_of_range"]["calcium"] == {"below": int((calcium < 2).sum()), "above": int((calcium > 20).sum())}
    assert 0.15 < (calcium < 2).mean() < 0.25  # ionised calcium mixed into the total-calcium column
    fio2 = raw["FiO2"].to_numpy()
    kept = cohort.hourly["fio2"].to_numpy()
    inside = (fio2 >= np.float32(0.21)) & (fio2 <= 1)
    assert np.array_equal(np.isfinite(kept), inside) and np.array_equal(kept[inside], fio2[inside].astype(np.float32))


def test_meds_round_trip_is_exact(cohort: Cohort, tmp_path: Path) -> None:
    back = read_meds(write_meds(cohort, tmp_path / "meds", subjects_per_shard=2500))
    assert back.counts() == {"stays": 6000, "hours": 227_481, "septic_stays": 339, "treatment_hours": 0}
    for table in ("stays", "hourly", "treatments"):
        assert_frame_equal(getattr(back, table), getattr(cohort, table))
    assert back.meta["source"] == "physionet2019"
    assert back.meta["provenance"]["ingest_report"]["out_of_range"] == {}
